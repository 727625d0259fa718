import FileContent
import Foundation
import RemoteCache

/// Open directories and files, by the number the kernel carries in `fi->fh`.
final class HandleTable: @unchecked Sendable {
    // @unchecked: `handles` and `next` are guarded by `lock`, a leaf lock.
    enum Handle {
        /// An open directory: the listing snapshot readdir pages through, so offsets stay
        /// stable while the kernel reads it in several calls.
        case directory(inode: UInt64, listing: FolderListing)
        case file(ReadStream)
        /// A file with a staged local version, read (and maybe written) through its own
        /// descriptor of the staging file.
        case staged(StagedFile, fd: Int32, writable: Bool)
        /// A file of `incoming/`: a local file, `path` relative to the incoming folder.
        case local(fd: Int32, path: String, writable: Bool)
    }

    private let lock = NSLock()
    private var handles: [UInt64: Handle] = [:]
    private var next: UInt64 = 1
    /// Writable handles written (or truncated) through since their last flush.
    private var unflushed: Set<UInt64> = []

    func add(_ handle: Handle) -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        let fh = next
        next += 1
        handles[fh] = handle
        return fh
    }

    func get(_ fh: UInt64) -> Handle? {
        lock.lock(); defer { lock.unlock() }
        return handles[fh]
    }

    func replace(_ fh: UInt64, with handle: Handle) {
        lock.lock(); defer { lock.unlock() }
        if handles[fh] != nil { handles[fh] = handle }
    }

    @discardableResult
    func remove(_ fh: UInt64) -> Handle? {
        lock.lock(); defer { lock.unlock() }
        unflushed.remove(fh)
        return handles.removeValue(forKey: fh)
    }

    /// Removes the handle; also whether it was written through since its last flush.
    func removeNotingWrites(_ fh: UInt64) -> (handle: Handle?, unflushed: Bool) {
        lock.lock(); defer { lock.unlock() }
        return (handles.removeValue(forKey: fh), unflushed.remove(fh) != nil)
    }

    func noteWrite(_ fh: UInt64) {
        lock.lock(); defer { lock.unlock() }
        if handles[fh] != nil { unflushed.insert(fh) }
    }

    func noteFlushed(_ fh: UInt64) {
        lock.lock(); defer { lock.unlock() }
        unflushed.remove(fh)
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return handles.count
    }
}
