/// The properties ncfs reads from a multistatus, identified by namespace URI and local name.
/// Prefixes are whatever the server made up (`d:`, `D:`, `lp1:`, none) and play no part.
enum MultistatusProperty {
    case etag, lastModified, contentLength, contentType, resourceType, quotaUsed, quotaAvailable
    case size, fileID, permissions, checksums
    /// ncfs's own dead property (`PropertySet.ncfs`): a file's POSIX mode and owner.
    case posix
    case trashFilename, trashOriginalLocation, trashDeletionTime

    static let dav: StaticString = "DAV:"
    static let owncloud: StaticString = "http://owncloud.org/ns"
    static let nextcloud: StaticString = "http://nextcloud.org/ns"
    static let ncfs: StaticString = "https://ncfs.invalid/ns"

    /// nil for a property ncfs does not read (it is skipped, but still named in
    /// `failedProperties` when its propstat failed). The first letter narrows the candidates
    /// before any full comparison: this runs for every property of every entry.
    init?(_ name: XMLName) {
        let first = name.localName.pointee
        let found: MultistatusProperty?
        if name.hasNamespace(Self.dav) {
            switch first {
            case UInt8(ascii: "g"):
                found = name.hasLocalName("getetag") ? .etag
                    : name.hasLocalName("getlastmodified") ? .lastModified
                    : name.hasLocalName("getcontentlength") ? .contentLength
                    : name.hasLocalName("getcontenttype") ? .contentType : nil
            case UInt8(ascii: "r"):
                found = name.hasLocalName("resourcetype") ? .resourceType : nil
            case UInt8(ascii: "q"):
                found = name.hasLocalName("quota-used-bytes") ? .quotaUsed
                    : name.hasLocalName("quota-available-bytes") ? .quotaAvailable : nil
            default:
                found = nil
            }
        } else if name.hasNamespace(Self.owncloud) {
            switch first {
            case UInt8(ascii: "s"): found = name.hasLocalName("size") ? .size : nil
            case UInt8(ascii: "f"): found = name.hasLocalName("fileid") ? .fileID : nil
            case UInt8(ascii: "p"): found = name.hasLocalName("permissions") ? .permissions : nil
            case UInt8(ascii: "c"): found = name.hasLocalName("checksums") ? .checksums : nil
            default: found = nil
            }
        } else if first == UInt8(ascii: "t"), name.hasNamespace(Self.nextcloud) {
            found = name.hasLocalName("trashbin-filename") ? .trashFilename
                : name.hasLocalName("trashbin-original-location") ? .trashOriginalLocation
                : name.hasLocalName("trashbin-deletion-time") ? .trashDeletionTime : nil
        } else if first == UInt8(ascii: "p"), name.hasNamespace(Self.ncfs) {
            found = name.hasLocalName("posix") ? .posix : nil
        } else {
            found = nil
        }
        guard let found else { return nil }
        self = found
    }
}
