public import WebDAV

/// What the cache keeps of one remote file or folder: exactly the fields readdir, lookup,
/// getattr and the xattrs need, nothing of the multistatus it came from.
///
/// Kept small on purpose (one per cached child, 100k of them must fit in a few tens of MiB):
/// the time is whole seconds, the permissions a bit set, the ETag inline (`StoredETag`), and
/// the name a Swift string, which stores up to 15 UTF-8 bytes inline (most names) and shares
/// storage when copied.
public struct RemoteEntry: Sendable, Equatable {
    public var name: String
    /// Files: `getcontentlength` (falling back to `oc:size`). Folders: `oc:size`, the recursive
    /// byte total, 0 when the server does not report it.
    public var size: Int64
    /// Seconds since 1970 (`getlastmodified` has one-second resolution anyway).
    public var mtime: Int64
    public var fileID: Int64
    /// The ETag without quotes; "" when the server sent none.
    public var etag: String {
        get { storedETag.text }
        set { storedETag = StoredETag(newValue) }
    }
    private var storedETag: StoredETag
    public var permissions: Permissions
    public var isDirectory: Bool
    /// ncfs's `posix` dead property (mode, owner, symbolic-link marker); nil when the server
    /// has none, or one that does not fit the entry (a folder marked as a link). One optional
    /// field, so an entry without it costs a few bytes only.
    public var posix: PosixAttributes?

    public init(name: String, isDirectory: Bool, size: Int64, mtime: Int64, etag: String, fileID: Int64, permissions: Permissions,
                posix: PosixAttributes? = nil) {
        self.name = name
        self.isDirectory = isDirectory
        self.size = size
        self.mtime = mtime
        self.storedETag = StoredETag(etag)
        self.fileID = fileID
        self.permissions = permissions
        self.posix = posix
    }

    public init(_ resource: DAVResource) {
        let size = resource.isCollection ? (resource.size ?? 0) : (resource.contentLength ?? resource.size ?? 0)
        self.init(name: resource.name, isDirectory: resource.isCollection, size: max(0, size),
                  mtime: Int64(resource.lastModified?.timeIntervalSince1970 ?? 0), etag: resource.etag ?? "",
                  fileID: resource.fileID ?? 0, permissions: Permissions(resource.permissions ?? ""),
                  posix: RemoteEntry.posix(resource.posix, isDirectory: resource.isCollection, size: size))
    }

    /// The property's value if it fits the entry: a folder's says folder, a file's says file
    /// or link, and a link's target fits in PATH_MAX (a larger "link" was changed by another
    /// client into a file and is shown as one).
    static func posix(_ text: String?, isDirectory: Bool, size: Int64) -> PosixAttributes? {
        guard let text, let posix = PosixAttributes(property: text) else { return nil }
        switch posix.type {
        case PosixAttributes.directory: return isDirectory ? posix : nil
        case PosixAttributes.symbolicLink: return !isDirectory && size > 0 && size < 4096 ? posix : nil
        default: return isDirectory ? nil : posix
        }
    }
}

/// `oc:permissions` letters as a bit set (the order of letters carries no meaning).
public struct Permissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Letters Nextcloud sends, in the order `description` prints them.
    static let letters: [(Character, UInt16)] = [
        ("S", 1 << 0), ("R", 1 << 1), ("M", 1 << 2), ("G", 1 << 3), ("D", 1 << 4), ("N", 1 << 5),
        ("V", 1 << 6), ("W", 1 << 7), ("C", 1 << 8), ("K", 1 << 9), ("P", 1 << 10),
    ]

    public init(_ letters: String) {
        var raw: UInt16 = 0
        for c in letters {
            if let bit = Permissions.letters.first(where: { $0.0 == c })?.1 { raw |= bit }
        }
        self.rawValue = raw
    }

    /// The letters again, in a fixed order (S R M G D N V W C K P).
    public var letters: String {
        String(Permissions.letters.compactMap { rawValue & $0.1 != 0 ? $0.0 : nil })
    }
}

/// An ETag as the cache keeps it. Nextcloud's file ETags are 32 lowercase hex digits (an MD5 of
/// the file's storage id, mtime and size), which a Swift string keeps on the heap: 64 bytes a
/// piece, 6 MiB for 100,000 cached files. As two 64-bit words they live inside the entry.
/// Folder ETags (13 hex digits) fit a string's inline storage anyway; anything else stays text.
/// The mapping is one to one, so equality of stored ETags is equality of the texts.
enum StoredETag: Sendable, Equatable {
    case text(String)
    case hex128(UInt64, UInt64)

    init(_ text: String) {
        let utf8 = text.utf8
        guard utf8.count == 32, utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
              let high = UInt64(text.prefix(16), radix: 16), let low = UInt64(text.suffix(16), radix: 16) else {
            self = .text(text)
            return
        }
        self = .hex128(high, low)
    }

    var text: String {
        switch self {
        case .text(let text): return text
        case .hex128(let high, let low): return Self.hex16(high) + Self.hex16(low)
        }
    }

    private static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
