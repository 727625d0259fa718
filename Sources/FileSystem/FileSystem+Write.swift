import FileContent
import Foundation
import Glibc
import RemoteCache
public import WebDAV
internal import SystemPackage

/// The write half: staged files, and the overlay that shows them before the server's listings
/// do (mkdir, unlink, rmdir and rename are in `FileSystem+Namespace`). Only after
/// `enableWrites`; until then every write is EROFS.
extension FileSystem {
    /// Where staged files and the upload journal live, and how uploads behave.
    public struct WriteOptions: Sendable {
        /// The state folder (staging files and `journal.sqlite`; created 0700). It must
        /// survive reboots: pending uploads live there.
        public var directory: URL
        /// Seconds between the last close and the upload (rsync renames and sets times just
        /// after closing; those must not cost an upload of their own).
        public var settleDelay: Double = 1
        /// Files above this go up in chunks (Nextcloud chunked upload v2).
        public var chunkThreshold: Int64 = 10 << 20
        public var chunkSize: Int64 = 10 << 20
        /// Uploads running at once.
        public var uploaders = 4
        /// Seconds `fsync` waits for the upload before failing with EIO.
        public var fsyncTimeout: Double = 120
        /// What `close` guarantees: true (the default, `-o close=crashsafe`), a file of up to
        /// 256 KiB is committed to the journal without an fsync, so it survives a crash or kill
        /// of the daemon but a power cut may lose the last moments of closes (whole files,
        /// never a part), as on a local file system; false (`-o close=durable`), the file
        /// survives a power cut once close returns. `fsync` waits for the server either way.
        public var crashSafeClose = true
        /// Small files go many to a request where the server takes bulk uploads (`-o bulk=off`
        /// sends each by PUT).
        public var bulkUpload = true
        /// The clock of the settle delay, retries, the batch linger and the timeouts, and of
        /// the attribute sync's delays (tests pass one they advance by hand).
        public var clock: any TimeSource = SystemTime()
        public init(directory: URL) { self.directory = directory }
    }

    /// Makes the mount writable: opens (or creates) the journal, shows and resumes what a
    /// previous run left pending. Call once, before the filesystem is mounted.
    public func enableWrites(_ options: WriteOptions, client: any RemoteStore) throws {
        var settings = WriteBack.Settings(directory: options.directory)
        settings.settleDelay = options.settleDelay
        settings.chunkThreshold = options.chunkThreshold
        settings.chunkSize = options.chunkSize
        settings.uploaders = options.uploaders
        settings.fsyncTimeout = options.fsyncTimeout
        settings.crashSafeClose = options.crashSafeClose
        settings.bulkUpload = options.bulkUpload
        let writeBack = try WriteBack(settings: settings, client: client, overlay: overlay, cache: cache, logger: logger,
                                      clock: options.clock)
        writeBack.uploaded = { [contentCache] fileID in contentCache.forget(fileID: fileID) }
        writeBack.start()
        self.writeBack = writeBack
        try enableAttributes(directory: options.directory, client: client, clock: options.clock)
    }

    public var isWritable: Bool { writeBack != nil }

    /// Pending uploads: files, bytes, and how many failed for a reason retrying cannot fix.
    public var pendingUploads: (count: Int, bytes: Int64, failed: Int) { writeBack?.pending ?? (0, 0, 0) }

    /// Waits up to `timeout` for pending uploads and stops the uploaders; returns how many are
    /// left in the journal for the next start.
    public func drainUploads(timeout: Double) -> Int { writeBack?.drain(timeout: timeout) ?? 0 }

    /// After the mount ended: settles the files still open for writing (their close never
    /// comes). Call before `drainUploads`. Returns one line for each, saying what became of
    /// it, and how many of them stay in the journal for the next start.
    public func abandonOpenWrites() -> (lines: [String], kept: Int) {
        let outcomes = writeBack?.abandonOpenWriters() ?? []
        let kept = outcomes.filter { if case .kept = $0 { true } else { false } }.count
        return (outcomes.compactMap { outcome in
            switch outcome {
            case .discarded(let path, let bytes):
                "/\(path) was still open for writing when the mount ended: its partial content (\(bytes) bytes) is not uploaded and its staging copy is removed"
            case .uploaded:
                // Unchanged since its close (often a close whose release the kernel had not
                // sent yet): uploaded as usual, nothing to say.
                nil
            case .kept(let path):
                "/\(path) was still open for writing when the mount ended, partly rewritten since its last close: kept in the journal and uploaded at the next mount (`ncfs status` lists it; a file of up to 256 KiB as its last close recorded it, a larger one as its staging copy stands)"
            }
        }, kept)
    }

    /// The text of the C library's last error (`errno` alone would name `FileSystem.errno(for:)` here).
    static func lastErrorText() -> String { Errno(rawValue: Glibc.errno).description }

    func requireWritable() throws(FSError) -> WriteBack {
        guard let writeBack else { throw .readOnly }
        return writeBack
    }

    func checkName(_ name: String, in parentPath: String) throws(FSError) {
        let path = FolderListing.join(parentPath, name)
        do { try cache.client.nameRules.value.check(name, method: "PUT", path: path) } catch { throw FSError.wrap(error) }
    }

    // MARK: Files

    /// Creates (or, without O_EXCL, truncates) `name` in `parent` and opens it for writing.
    /// Nothing reaches the server before the file is closed and settled. A new file gets `mode`
    /// and the `caller` as owner (see `FileSystem+Posix`); an existing one keeps its own.
    public func create(parent: UInt64, name: String, exclusive: Bool, mode: UInt32? = nil, caller: Caller? = nil) throws(FSError) -> (Attributes, UInt64) {
        _ = try requireWritable()
        let parentPath = try path(of: parent)
        let path = FolderListing.join(parentPath, name)
        if let place = incomingPlace(path) { return try create(in: place, exclusive: exclusive) }
        let existing = try entry(at: path)
        if let existing {
            if exclusive { throw .exists }
            if existing.isDirectory { throw .isDirectory }
        } else {
            try checkName(name, in: parentPath)
        }
        let (file, handle) = try openForWriting(path, entry: existing, truncate: true)
        if existing == nil { created(path, isDirectory: false, mode: mode, caller: caller) }
        let ino = inodes.lookup(path)
        return (attributes(file.entry(name: name), inode: ino), handle)
    }

    /// An open of a file that has (or, for writing, gets) a staged local version.
    func openStaged(_ file: StagedFile, writable: Bool, truncate: Bool) throws(FSError) -> UInt64 {
        file.lock.lock()
        let stagingPath = file.stagingPath
        file.lock.unlock()
        let fd = Glibc.open(stagingPath, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        // Gone: its upload finished and retired it just now (the caller opens again).
        guard fd >= 0 else {
            if Glibc.errno == ENOENT { throw .stagingRace }
            throw .cacheFailure("opening the staged copy \(stagingPath): \(FileSystem.lastErrorText())")
        }
        if writable && truncate {
            guard ftruncate(fd, 0) == 0 else {
                Glibc.close(fd)
                throw .cacheFailure("truncating the staged copy: \(FileSystem.lastErrorText())")
            }
            writeBack?.touched(file, size: 0)
        }
        let handle = handles.add(.staged(file, fd: fd, writable: writable))
        if writable && truncate { handles.noteWrite(handle) }
        return handle
    }

    public func write(_ handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) throws(FSError) -> Int {
        if case .local(let fd, _, true)? = handles.get(handle) {
            return try LocalFileWrite.all(fd, offset: offset, bytes: bytes, what: "the incoming/ file")
        }
        guard case .staged(let file, let fd, true)? = handles.get(handle) else { throw .badHandle }
        let written = try LocalFileWrite.all(fd, offset: offset, bytes: bytes, what: "the staged copy")
        writeBack?.touched(file, extend: offset + Int64(written))
        handles.noteWrite(handle)
        return written
    }

    /// Every close(2): what was written is on local disk and in the journal when it returns.
    public func flush(_ handle: UInt64) throws(FSError) {
        if case .local(let fd, let path, true)? = handles.get(handle) {
            try incoming?.flush(fd, path)
            return
        }
        guard case .staged(let file, _, true)? = handles.get(handle), let writeBack else { return }
        try writeBack.record(file)
        handles.noteFlushed(handle)
    }

    /// Returns once the file's content is on the server (or with the upload's error).
    public func fsync(_ handle: UInt64) throws(FSError) {
        if case .local(let fd, let path, _)? = handles.get(handle) {
            // Durable locally is all fsync promises here: the upload is the pipeline's, and
            // its progress shows in the file's user.ncfs.status.
            try incoming?.flush(fd, path)
            return
        }
        guard case .staged(let file, _, let writable)? = handles.get(handle), let writeBack else { return }
        if writable {
            try writeBack.record(file)
            handles.noteFlushed(handle)
        }
        try writeBack.waitUploaded(file)
    }

    // MARK: Attributes

    /// truncate/ftruncate (`size`) and utimens (`mtime`); mode and owner changes are accepted
    /// and ignored (the server has no such thing), so `cp -a` and `rsync -a` succeed.
    public func setattr(_ inode: UInt64, size: Int64?, mtime: Int64?, handle: UInt64?) throws(FSError) -> Attributes {
        let path = try path(of: inode)
        if let place = incomingPlace(path) { return try setattr(in: place, inode: inode, size: size, mtime: mtime) }
        guard let current = try entry(at: path) else { throw .notFound }
        if size != nil || mtime != nil {
            let writeBack = try requireWritable()
            if current.isDirectory {
                if size != nil { throw .isDirectory }
                if let mtime {
                    try remote { try cache.client.setModificationTime(path, Date(timeIntervalSince1970: TimeInterval(mtime))) }
                    writeBack.folderTimeSet(path, mtime: mtime)
                }
            } else if size != nil || writeBack.staged(path) != nil {
                // Staged (or about to be): the new size and mtime travel with the upload.
                var handleFile: StagedFile?
                if let handle, case .staged(let file, _, true)? = handles.get(handle) {
                    handleFile = file
                    handles.noteWrite(handle)
                }
                let file: StagedFile
                if let handleFile { file = handleFile } else {
                    file = try writeBack.stage(path, entry: writeBack.staged(path) == nil ? current : nil, truncate: size == 0)
                }
                let temporary = handleFile == nil
                defer {
                    if temporary {
                        do { try writeBack.record(file) } catch { logger.error("recording /\(path): \(error)") }
                        writeBack.closeWriter(file)
                    }
                }
                if let size {
                    file.lock.lock()
                    let stagingPath = file.stagingPath
                    file.lock.unlock()
                    guard truncate(stagingPath, off_t(size)) == 0 else {
                        throw .cacheFailure("truncating the staged copy: \(FileSystem.lastErrorText())")
                    }
                    writeBack.touched(file, size: size, mtime: mtime)
                } else if let mtime {
                    writeBack.touched(file, mtime: mtime)
                }
            } else if let mtime {
                // Already on the server and not being written: set it there.
                try remote { try cache.client.setModificationTime(path, Date(timeIntervalSince1970: TimeInterval(mtime))) }
                var changed = current
                changed.mtime = mtime
                overlay.present(path, changed)
            }
        }
        guard let updated = try entry(at: path) else { throw .notFound }
        return attributes(updated, inode: inode)
    }

    // MARK: Views with local changes

    /// The entry at `path` with this mount's changes applied ("" is the root).
    func entry(at path: String) throws(FSError) -> RemoteEntry? {
        if path.isEmpty { return try remote { try cache.listing("") }.folder }
        if let place = incomingPlace(path) { return entry(in: place) }
        let (parent, name) = MetadataCache.split(path)
        let listing = try remote { try cache.listing(parent) }
        if let known = overlay.lookup(path, listing: listing) { return known }
        return listing.child(named: name)
    }

    /// The listing of `path` with this mount's changes applied.
    func listing(at path: String) throws(FSError) -> FolderListing {
        if let place = incomingPlace(path) { return try listing(in: place) }
        let listing = overlay.merge(try remote { try cache.listing(path) })
        return path.isEmpty ? withIncoming(listing) : listing
    }
}
