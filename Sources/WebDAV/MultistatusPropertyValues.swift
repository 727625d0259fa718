import Foundation

/// The values found in one propstat, or merged over a response's successful propstats.
/// nil means "not reported", which `DAVResource` keeps distinct from zero or empty.
struct MultistatusPropertyValues {
    var isCollection: Bool?
    var etag: String?
    var lastModified: Date?
    var contentLength: Int64?
    var contentType: String?
    var quotaUsed: Int64?
    var quotaAvailable: Int64?
    var size: Int64?
    var fileID: Int64?
    var permissions: String?
    var checksums: [String]?
    var posix: String?
    var trashFilename: String?
    var trashOriginalLocation: String?
    var trashDeletionTime: Date?

    /// Stores the trimmed text of a text-valued property. `resourceType` and `checksums` have
    /// element content and are filled by the reader directly.
    mutating func set(_ property: MultistatusProperty, text: ArraySlice<UInt8>) {
        typealias V = MultistatusValues
        switch property {
        case .etag: etag = V.etag(text)
        case .lastModified: lastModified = V.httpDate(text)
        case .contentLength: contentLength = V.int64(text).flatMap { $0 >= 0 ? $0 : nil }
        case .contentType: contentType = text.isEmpty ? nil : V.string(text)
        case .quotaUsed: quotaUsed = V.int64(text)
        case .quotaAvailable: quotaAvailable = V.int64(text)
        // Nextcloud reports -1 for "not computed yet"; that is not a size.
        case .size: size = V.int64(text).flatMap { $0 >= 0 ? $0 : nil }
        case .fileID: fileID = V.int64(text)
        // Kept even when empty: the end-to-end encryption app blanks permissions on purpose.
        case .permissions: permissions = V.string(text)
        case .posix: posix = V.string(text)
        case .trashFilename: trashFilename = V.string(text)
        case .trashOriginalLocation: trashOriginalLocation = V.string(text)
        case .trashDeletionTime: trashDeletionTime = V.int64(text).flatMap(V.unixTime)
        case .resourceType, .checksums: break
        }
    }

    /// One `oc:checksum` element. Nextcloud stores the list as one string and may hand it out
    /// space- or comma-separated inside a single element (`ChecksumList`), so it is split here.
    mutating func addChecksums(text: ArraySlice<UInt8>) {
        let entries = text.split(whereSeparator: { $0 == UInt8(ascii: ",") || MultistatusValues.isSpace($0) })
        // Appended in place: building a new array per element would make a body of many
        // `oc:checksum` elements quadratic.
        if checksums == nil { checksums = [] }
        checksums?.append(contentsOf: entries.lazy.map { MultistatusValues.string($0) })
    }

    /// Takes every value `other` reported (a later 200 propstat wins, which never happens on
    /// a real server but keeps the result independent of how the server groups propstats).
    mutating func merge(_ other: Self) {
        isCollection = other.isCollection ?? isCollection
        etag = other.etag ?? etag
        lastModified = other.lastModified ?? lastModified
        contentLength = other.contentLength ?? contentLength
        contentType = other.contentType ?? contentType
        quotaUsed = other.quotaUsed ?? quotaUsed
        quotaAvailable = other.quotaAvailable ?? quotaAvailable
        size = other.size ?? size
        fileID = other.fileID ?? fileID
        permissions = other.permissions ?? permissions
        checksums = other.checksums ?? checksums
        posix = other.posix ?? posix
        trashFilename = other.trashFilename ?? trashFilename
        trashOriginalLocation = other.trashOriginalLocation ?? trashOriginalLocation
        trashDeletionTime = other.trashDeletionTime ?? trashDeletionTime
    }

    func apply(to resource: inout DAVResource) {
        resource.isCollection = isCollection ?? false
        resource.etag = etag
        resource.lastModified = lastModified
        resource.contentLength = contentLength
        resource.contentType = contentType
        resource.quotaUsed = quotaUsed
        resource.quotaAvailable = quotaAvailable
        resource.size = size
        resource.fileID = fileID
        resource.permissions = permissions
        resource.checksums = checksums ?? []
        resource.posix = posix
        if trashFilename != nil || trashOriginalLocation != nil || trashDeletionTime != nil {
            resource.trash = TrashInfo(originalName: trashFilename ?? "",
                                       originalLocation: trashOriginalLocation ?? "",
                                       deletionTime: trashDeletionTime)
        }
    }
}
