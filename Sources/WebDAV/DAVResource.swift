import Foundation

/// One `d:response` of a multistatus answer (PROPFIND, SEARCH, trash listing), with the
/// properties ncfs reads. Absent properties are nil: a generic WebDAV server has no `oc:` set,
/// and that must read as "unknown", never as zero.
public struct DAVResource: Sendable, Equatable {
    /// The href exactly as the server sent it (percent-encoded).
    public var href: String
    /// Decoded, NFC-normalised path relative to the listing's root, without leading or trailing
    /// slash; "" is the root itself.
    public var path: String
    public var isCollection: Bool
    /// `d:getetag` with surrounding quotes (and a weak `W/` prefix) removed.
    public var etag: String?
    public var lastModified: Date?
    /// `d:getcontentlength` (files only).
    public var contentLength: Int64?
    public var contentType: String?
    /// `oc:size`: a file's size, or a folder's recursive byte total. Negative values (Nextcloud's
    /// "not computed yet") are reported as nil.
    public var size: Int64?
    public var fileID: Int64?
    /// `oc:permissions` letters (e.g. `RGDNVW`).
    public var permissions: String?
    public var quotaUsed: Int64?
    /// `d:quota-available-bytes`; Nextcloud's -1/-2/-3 (not computed/unknown/unlimited) are kept.
    public var quotaAvailable: Int64?
    /// `oc:checksums` entries such as `SHA1:…`.
    public var checksums: [String]
    /// ncfs's dead property `{https://ncfs.invalid/ns}posix` (mode and owner), as stored.
    public var posix: String?
    /// Trash bin properties, present on trash listings.
    public var trash: TrashInfo?
    /// A `d:status` directly inside `d:response` (an error for the whole href), else nil.
    public var status: Int?
    /// Properties whose propstat status was neither 200 nor 404, keyed `{namespace}name`
    /// (PROPPATCH answers 403/409/424 this way).
    public var failedProperties: [String: Int]

    public init(href: String, path: String, isCollection: Bool = false) {
        self.href = href
        self.path = path
        self.isCollection = isCollection
        self.checksums = []
        self.failedProperties = [:]
    }

    /// The last path component ("" for the root).
    public var name: String {
        // Searched byte-wise: a slash followed by a combining mark is one Character, which a
        // search for the Character "/" passes over, leaving a slash inside the name.
        let bytes = path.utf8
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return String(decoding: bytes[bytes.index(after: slash)...], as: UTF8.self)
    }
}

public struct TrashInfo: Sendable, Equatable {
    /// `nc:trashbin-filename`: the name before deletion.
    public var originalName: String
    /// `nc:trashbin-original-location`: the path relative to the files root.
    public var originalLocation: String
    /// `nc:trashbin-deletion-time`.
    public var deletionTime: Date?

    public init(originalName: String, originalLocation: String, deletionTime: Date?) {
        self.originalName = originalName
        self.originalLocation = originalLocation
        self.deletionTime = deletionTime
    }
}
