/// A file's POSIX type, permission bits and owner, as ncfs stores them on the server in its
/// dead property `{https://ncfs.invalid/ns}posix`: `"<mode in octal, with the type bits>
/// <uid> <gid>"`, e.g. `100640 1000 100` for a regular file or `120777 0 0` for a symbolic
/// link. Text, so that a person reading the property in a WebDAV client understands it.
///
/// Nextcloud knows nothing of modes or owners: these are what the mounts of one store agree
/// on among themselves. An entry without the property gets the mount's defaults.
public struct PosixAttributes: Sendable, Hashable {
    /// `st_mode`: the type bits (`S_IFREG`, `S_IFDIR`, `S_IFLNK`) and the permission bits
    /// (including set-uid, set-gid and sticky).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32

    public init(mode: UInt32, uid: UInt32, gid: UInt32) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
    }

    // The type bits of <sys/stat.h>, which are the same on every POSIX system ncfs runs on.
    public static let typeMask: UInt32 = 0o170000
    public static let regular: UInt32 = 0o100000
    public static let directory: UInt32 = 0o040000
    public static let symbolicLink: UInt32 = 0o120000

    public var type: UInt32 { mode & PosixAttributes.typeMask }
    public var permissions: UInt32 { mode & 0o7777 }
    public var isSymbolicLink: Bool { type == PosixAttributes.symbolicLink }

    /// Parses the property's text; nil for anything else (a value another program wrote, a
    /// type ncfs does not keep), which then reads as "no property".
    public init?(property text: String) {
        let fields = text.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 3, let mode = UInt32(fields[0], radix: 8), let uid = UInt32(fields[1]), let gid = UInt32(fields[2])
        else { return nil }
        let type = mode & PosixAttributes.typeMask
        guard mode & ~(PosixAttributes.typeMask | 0o7777) == 0,
              type == PosixAttributes.regular || type == PosixAttributes.directory || type == PosixAttributes.symbolicLink
        else { return nil }
        self.init(mode: mode, uid: uid, gid: gid)
    }

    /// The property's text (see the type's comment).
    public var property: String { String(mode, radix: 8) + " \(uid) \(gid)" }
}
