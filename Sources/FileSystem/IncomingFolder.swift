import Foundation
import Glibc
import RemoteCache
import WebDAV
internal import SystemPackage

/// The local half of the mount: `incoming/` is a folder of staged files on local disk, shown
/// at the mount root, that the server never sees. Files are written at local-disk speed and
/// made durable (fsync of the file, and of its folder for new names) before `close` returns;
/// the ingest pipeline takes them from here and removes each one once it is persisted.
public final class IncomingFolder: IncomingStaging, @unchecked Sendable {
    // @unchecked: `writers` is guarded by `lock` (a leaf lock); `observer` and `nameRules` are
    // set once before the mount is served.

    /// The folder's name at the mount root.
    public let name: String
    /// The local folder holding the staged files (created 0700).
    public let root: URL
    public weak var observer: (any IncomingObserver)?
    /// The names the server refuses (the mount's client's rules, which the server's
    /// capabilities may extend): a new file or folder in incoming/ is held to them, as one
    /// anywhere else in the mount is, so a name that could never be uploaded is EINVAL at
    /// once instead of an item that fails later. nil: no check.
    public var nameRules: NameRulesBox?

    private let lock = NSLock()
    /// Open writable handles per relative path.
    private var writers: [String: Int] = [:]

    public init(name: String, root: URL) throws {
        self.name = name
        self.root = root
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(root.path, 0o700)
    }

    /// EINVAL for a name the server refuses, given to a new file (created or renamed to) or
    /// folder. Temporary names are exempt for files: they never reach the server (a browser's
    /// `photo.jpg.part` is renamed to `photo.jpg` before it is an item).
    func checkNewName(_ relative: String, isFile: Bool) throws(FSError) {
        guard let rules = nameRules?.value, let name = PathBytes.components(relative).last else { return }
        if isFile && IncomingNames.isTemporaryName(name) { return }
        if rules.violation(in: name) != nil { throw .invalid }
    }

    /// Whether a writable handle is open on `path`.
    public func isOpenForWriting(_ path: String) -> Bool {
        lock.withLock { (writers[path] ?? 0) > 0 }
    }

    public func localPath(_ relative: String) -> String {
        relative.isEmpty ? root.path : root.path + "/" + relative
    }

    // MARK: Used by FileSystem

    func entry(_ relative: String) -> RemoteEntry? {
        var st = stat()
        guard lstat(localPath(relative), &st) == 0 else { return nil }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        guard isDirectory || (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let leaf = relative.isEmpty ? name : (PathBytes.components(relative).last ?? "")
        return RemoteEntry(name: leaf, isDirectory: isDirectory, size: isDirectory ? 0 : Int64(st.st_size),
                           mtime: Int64(st.st_mtim.tv_sec), etag: "", fileID: 0, permissions: Permissions("RGDNVCK"))
    }

    func listing(_ relative: String, mountPath: String) throws(FSError) -> FolderListing {
        guard let folder = entry(relative) else { throw .notFound }
        guard folder.isDirectory else { throw .notDirectory }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: localPath(relative)) } catch {
            throw .cacheFailure("listing \(localPath(relative)): \(error)")
        }
        let children = names.compactMap { entry(FolderListing.join(relative, $0)) }
        return FolderListing(path: mountPath, folder: folder, children: children)
    }

    /// Opens (or creates) the file; a writable handle counts as a writer until `closed`.
    func open(_ relative: String, writable: Bool, create: Bool, exclusive: Bool, truncate: Bool) throws(FSError) -> Int32 {
        var flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        if truncate && writable { flags |= O_TRUNC }
        if create, entry(relative) == nil { try checkNewName(relative, isFile: true) }
        let open = { () throws(FSError) -> Int32 in
            let fd = Glibc.open(self.localPath(relative), flags, 0o600)
            guard fd >= 0 else { throw Self.error(errno, "opening incoming/\(relative)") }
            if writable { self.lock.withLock { self.writers[relative, default: 0] += 1 } }
            return fd
        }
        if writable, let observer { return try observer.permitChange([relative], open) }
        return try open()
    }

    /// A writer's close(2): the file's bytes, and for a new name its folder entry, are on disk.
    func flush(_ fd: Int32, _ relative: String) throws(FSError) {
        guard fsync(fd) == 0 else { throw Self.error(errno, "fsync of incoming/\(relative)") }
        try syncFolder(of: relative)
    }

    /// The last close of a handle.
    func closed(_ fd: Int32, _ relative: String, writable: Bool) {
        Glibc.close(fd)
        guard writable else { return }
        lock.withLock {
            let count = (writers[relative] ?? 1) - 1
            writers[relative] = count > 0 ? count : nil
        }
        observer?.changed(relative)
    }

    func setattr(_ relative: String, size: Int64?, mtime: Int64?) throws(FSError) {
        let path = localPath(relative)
        let apply = { () throws(FSError) -> Void in
            if let size, Glibc.truncate(path, off_t(size)) != 0 { throw Self.error(errno, "truncating incoming/\(relative)") }
            if let mtime {
                // atime untouched (UTIME_OMIT), mtime set.
                var times = [timespec(tv_sec: 0, tv_nsec: Self.utimeOmit), timespec(tv_sec: Int(mtime), tv_nsec: 0)]
                guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw Self.error(errno, "setting the time of incoming/\(relative)") }
            }
        }
        guard size != nil || mtime != nil else { return }
        if let observer { try observer.permitChange([relative], apply) } else { try apply() }
        if !isOpenForWriting(relative) { observer?.changed(relative) }
    }

    func mkdir(_ relative: String) throws(FSError) {
        if entry(relative) == nil { try checkNewName(relative, isFile: false) }
        guard Glibc.mkdir(localPath(relative), 0o700) == 0 else { throw Self.error(errno, "creating incoming/\(relative)") }
        try syncFolder(of: relative)
    }

    func unlink(_ relative: String) throws(FSError) {
        let remove = { () throws(FSError) -> Void in
            guard Glibc.unlink(self.localPath(relative)) == 0 else { throw Self.error(errno, "removing incoming/\(relative)") }
        }
        if let observer { try observer.permitChange([relative], remove) } else { try remove() }
        observer?.removed(relative)
    }

    func rmdir(_ relative: String) throws(FSError) {
        guard Glibc.rmdir(localPath(relative)) == 0 else { throw Self.error(errno, "removing incoming/\(relative)") }
    }

    /// rename(2) inside incoming/. A file whose item is being processed cannot move, nor can a
    /// folder holding one, nor can one replace it. RENAME_NOREPLACE is checked before the
    /// rename (glibc's renameat2 is not visible to Swift); the kernel serialises renames in one
    /// folder, so only a writer outside the mount could slip in between.
    func rename(_ from: String, to: String, noReplace: Bool) throws(FSError) {
        let source = localPath(from), target = localPath(to)
        let moved = (try? FileManager.default.subpathsOfDirectory(atPath: source))?.map { FolderListing.join(from, $0) } ?? [from]
        try checkNewName(to, isFile: entry(from)?.isDirectory != true)
        let move = { () throws(FSError) -> Void in
            if noReplace, self.entry(to) != nil { throw .exists }
            guard Glibc.rename(source, target) == 0 else { throw Self.error(errno, "renaming incoming/\(from)") }
        }
        guard let observer else { try move(); return }
        try observer.permitChange([to] + moved, move)
        try syncFolder(of: to)
        for path in moved { observer.removed(path) }
        observer.changed(to)
        if let children = try? FileManager.default.subpathsOfDirectory(atPath: target) {
            for child in children { observer.changed(FolderListing.join(to, child)) }
        }
    }

    /// fsync of the folder holding `relative`, so a new, removed or renamed name survives a crash.
    private func syncFolder(of relative: String) throws(FSError) {
        let parent = localPath(MetadataCache.split(relative).parent)
        let fd = Glibc.open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Self.error(errno, "opening \(parent)") }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw Self.error(errno, "fsync of \(parent)") }
    }

    /// UTIME_OMIT from <sys/stat.h> (a macro Swift does not import).
    private static let utimeOmit = (1 << 30) - 2

    /// A local failure as the errno the caller would have got from the local filesystem.
    static func error(_ code: Int32, _ what: String) -> FSError {
        switch code {
        case ENOENT: .notFound
        case EEXIST: .exists
        case ENOTEMPTY: .notEmpty
        case EISDIR: .isDirectory
        case ENOTDIR: .notDirectory
        case EINVAL: .invalid
        default: .cacheFailure("\(what): \(Errno(rawValue: code).description)")
        }
    }
}

extension FileSystem {
    /// The pipeline removed `relative` from incoming/ (its item is persisted): the kernel
    /// forgets the name now rather than when its entry times out.
    public func incomingFileLeft(_ relative: String) {
        guard let incoming else { return }
        let path = FolderListing.join(incoming.name, relative)
        let (parent, name) = MetadataCache.split(path)
        guard let folder = inodes.existing(parent) else { return }
        var items: [Invalidation] = [.entry(parent: folder, name: name), .inode(folder)]
        if let inode = inodes.existing(path) { items.append(.inode(inode)) }
        invalidationObserver?.invalidate(items)
    }
}
