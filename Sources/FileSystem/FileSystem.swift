import FileContent
import Foundation
public import Logging
public import RemoteCache
public import WebDAV

/// POSIX semantics over the Nextcloud tree, without FUSE: inode numbers, lookup counts,
/// directory and file handles, attributes, xattrs, and the errno of every failure
/// (`FSError.errno`). The FUSE bridge only copies arguments in and results out, so all of
/// this can be tested in-process (FileSystemTests does, against the emulator and the in-memory
/// store: reads, writes through the reference-model tests, incoming/ through its router).
///
/// Writes go through `writeBack` (staging files, the upload journal, background uploads); a
/// filesystem made without one is read-only, and every write operation fails with EROFS.
/// Methods block the calling thread on network requests; call them from worker threads,
/// never from the Swift concurrency pool.
public final class FileSystem: @unchecked Sendable {
    // @unchecked: `_invalidationObserver` is guarded by `observerLock` (a leaf lock);
    // `writeBack`, `attributeStore` and `attributeSync` are written once before the filesystem is shared; everything else is
    // immutable or a Sendable/@unchecked-with-its-own-lock object.

    public struct Options: Sendable {
        /// Report folders' `st_size` as 0 instead of their recursive `oc:size`.
        public var zeroFolderSizes = false
        public var uid: UInt32 = getuid()
        public var gid: UInt32 = getgid()
        /// Bits taken away from 0666 (files) and 0777 (folders) for entries with no stored mode.
        public var umask: UInt32 = 0o022
        public var readAhead = ReadAhead()
        public var walkAhead = WalkAhead()
        public var contentCache = ContentCacheOptions()
        public init() {}
    }

    /// Where read file content is kept (see `FileContent.ContentCacheOptions`).
    public typealias ContentCacheOptions = FileContent.ContentCacheOptions
    /// How reads fetch (see `FileContent.ReadAhead`).
    public typealias ReadAhead = FileContent.ReadAhead

    /// Folder read-ahead for tree walks (`FolderWalkAhead`): a folder opened within a second
    /// of its parent has the parent's next `window` unlisted subfolders listed in the
    /// background, `width` at a time. `window` 0 turns it off.
    public struct WalkAhead: Sendable {
        public var window = 6
        public var width = 3
        public init() {}
    }

    public let cache: MetadataCache
    /// The client for file content (short stall timeout and retry budget, so a read that
    /// cannot succeed turns into EIO promptly).
    let reader: any RemoteStore
    public let options: Options
    let logger: Logger
    let inodes = InodeTable()
    let handles = HandleTable()
    let contentCache: ContentCache
    let fetcher: ContentFetcher
    let walkAhead: FolderWalkAhead
    let overlay = Overlay()
    /// Set once by `enableWrites`, before the filesystem is mounted (and so before any other
    /// thread reads it); nil keeps the mount read-only.
    var writeBack: WriteBack?
    /// Modes, owners and local times (`FileSystem+Posix`): in memory until `enableWrites`
    /// replaces it with the state folder's, before the filesystem is mounted.
    var attributeStore = AttributeStore()
    /// Set once by `enableWrites` with the store; nil on a read-only mount.
    var attributeSync: AttributeSync?
    let linkTargets = LinkTargets()
    /// Set once by `enableIncoming`, before the filesystem is mounted; nil: no incoming/ folder.
    public internal(set) var incoming: IncomingFolder?
    private let observerLock = NSLock()
    private weak var _invalidationObserver: (any InvalidationObserver)?

    public static let rootInode: UInt64 = InodeTable.root

    public init(cache: MetadataCache, reader: (any RemoteStore)? = nil, options: Options = Options(),
                logger: Logger = Logger(label: "ncfs.fs")) {
        self.cache = cache
        self.reader = reader ?? cache.client
        self.options = options
        self.logger = logger
        contentCache = ContentCache(options: options.contentCache, logger: logger)
        fetcher = ContentFetcher(client: self.reader, cache: contentCache, threads: 8, resumeBudget: options.readAhead.timeout)
        walkAhead = FolderWalkAhead(cache: cache, pool: fetcher.pool, options: options.walkAhead)
        cache.observer = self
    }

    /// Background listings the walk-ahead has started (`FolderWalkAhead`).
    public var walkAheadListings: Int { walkAhead.listingsStarted }

    /// Why the content cache folder cannot be used, if it cannot (check before mounting).
    public var contentCacheProblem: String? { contentCache.setupError }

    /// Bytes of file content held in the local cache.
    public var contentCacheBytes: Int64 { contentCache.storedBytes }

    /// Told which kernel caches to drop when the metadata cache learns of a server change.
    public var invalidationObserver: (any InvalidationObserver)? {
        get { observerLock.lock(); defer { observerLock.unlock() }; return _invalidationObserver }
        set { observerLock.lock(); _invalidationObserver = newValue; observerLock.unlock() }
    }

    /// How long the kernel may keep entries and attributes: the cache's validity window.
    /// Changes found by the poll are pushed to the kernel as invalidations, so the kernel
    /// never shows a change later than the cache does.
    public var kernelTimeout: Double {
        MetadataCache.seconds(cache.configuration.effectiveFreshness)
    }

    /// Whether the kernel may keep a file's pages across opens. Not for now: with writes, a
    /// file's version changes through this mount's own uploads without an inode invalidation,
    /// and keeping pages across that has not been proven by the exerciser yet. Re-reads still
    /// cost no request (the content cache answers them), only a FUSE round trip per read.
    public var keepsPageCache: Bool { false }

    // MARK: Names

    /// Looks `name` up in the folder `parent`; counts one kernel lookup on the result.
    public func lookup(parent: UInt64, name: String) throws(FSError) -> Attributes {
        let path = FolderListing.join(try path(of: parent), name)
        guard let entry = try entry(at: path) else { throw .notFound }
        let ino = inodes.lookup(path)
        return attributes(entry, inode: ino)
    }

    /// The kernel dropped `count` lookups of `inode`.
    public func forget(_ inode: UInt64, count: UInt64) {
        inodes.forget(inode, count: count)
    }

    /// The attributes of `inode`; with `handle` (an fgetattr), those of the open file even
    /// when its name is gone (unlinked or replaced while open).
    public func getattr(_ inode: UInt64, handle: UInt64? = nil) throws(FSError) -> Attributes {
        if let handle {
            switch handles.get(handle) {
            case .staged(let file, _, _)?:
                return attributes(file.entry(name: MetadataCache.split(inodes.path(of: inode) ?? "").name), inode: inode)
            case .file(let stream)?:
                if let path = inodes.path(of: inode), let current = try? entry(at: path), current.fileID == stream.entry.fileID {
                    return attributes(current, inode: inode)
                }
                return attributes(stream.entry, inode: inode)
            case .directory?, .local?, nil:
                break
            }
        }
        let path = try path(of: inode)
        guard let entry = try entry(at: path) else { throw .notFound }
        return attributes(entry, inode: inode)
    }

    // MARK: Directories

    public func opendir(_ inode: UInt64) throws(FSError) -> UInt64 {
        let path = try path(of: inode)
        let listing = try listing(at: path)
        if incomingPlace(path) == nil {
            walkAhead.opened(path) { incomingPlace($0) != nil }
        }
        return handles.add(.directory(inode: inode, listing: listing))
    }

    /// Entries of the open directory `handle` from `offset` on ("." and ".." first), handed to
    /// `add` until it returns false (the reply buffer is full). With `plus`, each entry `add`
    /// accepted counts as a kernel lookup (readdirplus entries are lookups); a refused one
    /// does not.
    public func readdir(_ handle: UInt64, offset: Int64, plus: Bool, add: (DirectoryEntry) -> Bool) throws(FSError) {
        guard case .directory(let dirInode, var listing)? = handles.get(handle) else { throw .badHandle }
        if offset == 0 {
            // rewinddir (or the first call): take the current listing.
            listing = try self.listing(at: listing.path)
            handles.replace(handle, with: .directory(inode: dirInode, listing: listing))
        }
        var index = offset
        if index == 0 {
            guard add(DirectoryEntry(name: ".", inode: dirInode, isDirectory: true, nextOffset: 1, attributes: nil)) else { return }
            index = 1
        }
        if index == 1 {
            let parentInode = listing.path.isEmpty ? dirInode
                : inodes.existing(MetadataCache.split(listing.path).parent) ?? FileSystem.rootInode
            guard add(DirectoryEntry(name: "..", inode: parentInode, isDirectory: true, nextOffset: 2, attributes: nil)) else { return }
            index = 2
        }
        let children = listing.children
        var i = Int(index - 2)
        while i < children.count {
            let entry = children[i]
            let path = listing.childPath(entry.name)
            let next = Int64(i + 3)
            if plus {
                let ino = inodes.lookup(path)
                let item = DirectoryEntry(name: entry.name, inode: ino, isDirectory: entry.isDirectory, nextOffset: next,
                                          attributes: attributes(entry, inode: ino))
                guard add(item) else { inodes.forget(ino, count: 1); return }
            } else {
                // Plain readdir creates no node; the kernel looks the name up before using it.
                let ino = inodes.existing(path) ?? FileSystem.unknownInode
                guard add(DirectoryEntry(name: entry.name, inode: ino, isDirectory: entry.isDirectory, nextOffset: next,
                                         attributes: nil)) else { return }
            }
            i += 1
        }
    }

    /// libfuse's FUSE_UNKNOWN_INO: "no inode number yet" in a plain readdir entry.
    static let unknownInode: UInt64 = 0xffff_ffff

    public func releasedir(_ handle: UInt64) {
        handles.remove(handle)
    }

    // MARK: statfs

    /// Sizes from the root's quota properties. An unlimited or unknown quota reports 1 PiB
    /// free: large enough for any copy tool's free-space check, small enough that no tool
    /// overflows multiplying blocks by block size.
    public func statfs() throws(FSError) -> FileSystemStatistics {
        let root = try remote { try cache.quotaInfo() }
        let blockSize: UInt64 = 4096
        let used = UInt64(max(0, root.quotaUsed ?? root.size ?? 0))
        let available: UInt64 = if let a = root.quotaAvailable, a >= 0 { UInt64(a) } else { 1 << 50 }
        let total = used + available
        return FileSystemStatistics(blockSize: blockSize, totalBlocks: (total + blockSize - 1) / blockSize,
                                    freeBlocks: available / blockSize, files: UInt64(cache.statistics.entries),
                                    maxNameLength: 255)
    }

    // MARK: Helpers

    func path(of inode: UInt64) throws(FSError) -> String {
        guard let path = inodes.path(of: inode) else { throw .notFound }
        return path
    }

    /// Runs a call into the cache or client and turns its failure into an FSError.
    func remote<T>(_ body: () throws -> T) throws(FSError) -> T {
        do { return try body() } catch { throw FSError.wrap(error) }
    }

    /// Inodes and handles currently held (for tests and logs).
    public var statistics: (inodes: Int, handles: Int) { (inodes.count, handles.count) }

    /// The kernel's current lookup count of `inode` (nil when not known).
    public func lookupCount(_ inode: UInt64) -> UInt64? { inodes.lookupCount(inode) }
}
