/// What getattr reports, in POSIX terms (the bridge copies it into a `struct stat`).
public struct Attributes: Sendable, Equatable {
    public var inode: UInt64
    public var isDirectory: Bool
    /// Files: the byte length. Folders: `oc:size` (recursive total), or 0 with `dirsize=zero`.
    public var size: Int64
    /// 512-byte blocks: ceil(size/512) for files, 0 for folders so `du` counts bytes once.
    public var blocks: Int64
    /// Seconds since 1970.
    public var mtime: Int64
    /// Permission bits without the type bits.
    public var permissions: UInt16
    public var links: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// A symbolic link (`S_IFLNK`); `size` is the target's length.
    public var isSymbolicLink = false
    /// The times in nanoseconds since 1970 (`mtime` above is the same in whole seconds).
    public var mtimeNanoseconds: Int64 = 0
    public var atimeNanoseconds: Int64 = 0
    public var ctimeNanoseconds: Int64 = 0
}

/// One directory entry for readdir(plus); `attributes` is nil for "." and "..".
public struct DirectoryEntry: Sendable {
    public var name: String
    public var inode: UInt64
    public var isDirectory: Bool
    /// The offset that resumes after this entry.
    public var nextOffset: Int64
    public var attributes: Attributes?
}

/// statfs in POSIX terms.
public struct FileSystemStatistics: Sendable, Equatable {
    public var blockSize: UInt64
    public var totalBlocks: UInt64
    public var freeBlocks: UInt64
    public var files: UInt64
    public var maxNameLength: UInt64
}
