import FileContent
import Foundation
import Glibc
import HTTPTransport
import Journal
import Logging
import RemoteCache
import Synchronization
import WebDAV

/// Staged files and their uploads: the write half of the mount.
///
/// The life of a written file: `stage` makes a local staging file (empty, or the server's
/// content when a writer keeps it); writes go to it; each close makes it durable and records
/// it in the journal (`record`) before returning — a small file's bytes in the journal row
/// itself, one fsync in all; a larger one fsynced in place — so from then on a crash loses
/// nothing; after a
/// short settle delay (rsync renames its temp file and sets the mtime right after closing)
/// an uploader thread sends it — small files many to a bulk request where the server offers
/// one (`WriteBack+Batch.swift`), others by PUT, or chunked above the threshold, with
/// `If-Match` on the ETag it was based on — makes sure the server stored what was sent, and
/// only then drops the journal row and the staging file. A server that changed the file meanwhile gets the local version
/// as `name (conflict <time>).ext` beside its own; nothing is overwritten or dropped silently.
///
/// Here: the state, start (resuming what the journal holds), the figures and the drain.
/// `WriteBack+Staging`: staging files and the journal records of closes. `WriteBack+Names`:
/// unlink and rename. `WriteBack+Upload`: the uploaders and one file's upload.
/// `WriteBack+Settle`: what an upload's outcome changes. `WriteBack+Batch`: bulk requests and
/// batches of PUTs. `UploadLifecycle` (a value in each `StagedFile`): when a file may be
/// uploaded, its events returning what to do; `UploadSchedule`: which due file an uploader
/// takes, by due time. Time comes from the injected `clock`.
final class WriteBack: @unchecked Sendable {
    // @unchecked: `files`, `schedule`, `stopping`, `activeUploads`, `liveUploaders`,
    // `folderTimes`, `nextStagingNumber` and `drainDeadline` are guarded by `condition`; each
    // StagedFile's fields by its own lock.
    //
    // Lock order, each taken only after the ones before it:
    //   `names` → a StagedFile's `journalLock` → `condition` → Overlay's lock → a StagedFile's `lock`.
    // No journal commit, request or file copy runs under `condition` (every close, release,
    // create and uploader takes it): journal writes keyed by a path run under `names`, those
    // that depend on a file's base ETag under its `journalLock`, and SQLite's own lock is the
    // only one taken inside either.

    struct Settings: Sendable {
        /// Folder of staging files and the journal (0700, files 0600).
        var directory: URL
        /// Wait this long after the last close before uploading (rsync and editors rename
        /// and set times right after closing).
        var settleDelay: Double = 1
        var chunkThreshold: Int64 = 10 << 20
        var chunkSize: Int64 = 10 << 20
        var uploaders = 4
        /// Files up to this size are kept in their journal row when closed, so that the row's
        /// commit is their close's only fsync (the staging file is rebuilt from it after a
        /// crash); larger ones have their staging file fsynced.
        var inlineLimit: Int64 = 256 << 10
        /// `close=crashsafe` (the default): the journal commit of a file kept in its row is not
        /// fsynced (it survives a crash of the daemon, not a power cut). Larger files are
        /// always fsynced.
        var crashSafeClose = true
        /// Send small files in bulk requests where the server offers them.
        var bulkUpload = true
        /// Files up to this size are batched: one bulk request, or PUTs verified by one
        /// listing per folder. Nextcloud holds each bulk part in PHP memory.
        var batchFileLimit: Int64 = 1 << 20
        /// At most this many files and bytes in one bulk request.
        var bulkFiles = 100
        var bulkBytes: Int64 = 16 << 20
        /// At most this many files in one batch of PUTs (one uploader sends them in turn).
        var putBatchFiles = 8
        /// How long a due small file may wait for others falling due, to share a bulk request.
        var batchLinger: Double = 1

        /// What `RemoteStore.route` decides a file's way to the server by.
        var uploadLimits: UploadLimits { UploadLimits(bulk: bulkUpload, bulkMax: batchFileLimit, chunkAbove: chunkThreshold) }
        /// How long `fsync` waits for the upload before it fails with EIO.
        var fsyncTimeout: Double = 120
        /// The wait before retrying a failed upload: 1 s doubling to 5 min. No jitter: a file's
        /// retry goes with others due then, in one batch.
        var retry = Backoff(base: 1, cap: 300)
    }

    let settings: Settings
    let client: any RemoteStore
    let journal: UploadJournal
    let overlay: Overlay
    let cache: MetadataCache
    let logger: Logger
    /// Every time write-back reads or waits for (injected: tests advance a clock by hand).
    let clock: any TimeSource
    let condition = NSCondition()
    /// Orders the journal writes keyed by a path (a close's record, an mtime, a rename, an
    /// unlink) with the changes of paths in memory: a rename holds it from its journal
    /// transaction until the staged files carry their new paths, so a close never records a
    /// file under a name the journal has just moved away from. The journal serializes its
    /// writers anyway, so a close waits here only for what SQLite would make it wait for.
    let names = NSLock()
    /// Told the file id of every file this mount has uploaded (the content cache drops what it
    /// held of the file: see `ContentCache.forget`). Set once, before `start`.
    var uploaded: @Sendable (Int64) -> Void = { _ in }
    var files: [String: StagedFile] = [:]
    /// The files an uploader may take, by due time (see `reschedule`).
    var schedule: UploadSchedule
    var stopping = false
    var nextStagingNumber = 0
    /// Uploaders between choosing a file and having finished with it (its leftovers deleted).
    var activeUploads = 0
    /// Uploader threads started and not yet stopped by the drain.
    var liveUploaders = 0
    /// Folder mtimes set through the mount (utimens), by path, at most `folderTimesLimit`.
    /// Nextcloud raises every ancestor's mtime to the upload time when a file is uploaded below
    /// it (seen on 32.0.1), so a folder time that `rsync -a` or `cp -a` set would be lost to the
    /// uploads that follow, which run after the copy. Each time an upload leaves nothing pending
    /// below such a folder, its time is set again. Kept in memory only: after a crash or a
    /// remount the folder keeps the upload time. Guarded by `condition`.
    var folderTimes: [String: Int64] = [:]
    /// Set while the unmount's drain waits: when it gives up (see `retryDelay`).
    var drainDeadline: Date?
    private static let folderTimesLimit = 10_000

    var stagingDirectory: URL { settings.directory.appendingPathComponent("staging") }

    init(settings: Settings, client: any RemoteStore, overlay: Overlay, cache: MetadataCache, logger: Logger,
         clock: any TimeSource = SystemTime()) throws {
        self.settings = settings
        self.clock = clock
        schedule = UploadSchedule(limits: .init(uploaders: settings.uploaders, batchFileLimit: settings.batchFileLimit,
                                                bulkFiles: settings.bulkFiles, bulkBytes: settings.bulkBytes,
                                                putBatchFiles: settings.putBatchFiles, batchLinger: settings.batchLinger),
                                  clock: clock)
        self.client = client
        self.overlay = overlay
        self.cache = cache
        self.logger = logger
        let manager = FileManager.default
        try manager.createDirectory(at: settings.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try manager.createDirectory(at: settings.directory.appendingPathComponent("staging"), withIntermediateDirectories: true,
                                    attributes: [.posixPermissions: 0o700])
        journal = try UploadJournal(path: settings.directory.appendingPathComponent("journal.sqlite").path)
        try resume()
    }

    /// Loads what a previous run left pending: visible in the mount again, uploading soon.
    private func resume() throws {
        let interrupted = try journal.recoverInterrupted()
        let pending = try journal.all()
        let known = Set(pending.map { URL(fileURLWithPath: $0.stagingFile).lastPathComponent })
        for upload in pending {
            // Bytes kept in the row are the recorded content; the staging file may have lost
            // them (it was never fsynced), so it is written anew from the row.
            if let content = try journal.content(id: upload.id) {
                try Self.restore(content, to: upload.stagingFile)
            }
            let file = StagedFile(path: upload.remotePath, stagingPath: upload.stagingFile, size: upload.size, mtime: upload.mtime,
                                  base: StagedFile.Base(journalValue: upload.baseETag), fileID: 0)
            file.journalID = upload.id
            file.generation = upload.generation
            file.chunkUploadID = upload.chunkUploadID
            _ = file.upload.resumed(at: clock.now)
            files[upload.remotePath] = file
            overlay.set(upload.remotePath, .staged(file))
            condition.withLock { reschedule(file) }
        }
        // Staging files no journal row names were never closed: their writer never got a
        // successful close, so nothing was promised for them.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: stagingDirectory.path)) ?? [] where !known.contains(name) {
            unlink(stagingDirectory.appendingPathComponent(name).path)
        }
        nextStagingNumber = pending.count
        if !pending.isEmpty {
            logger.notice("resuming \(pending.count) pending upload(s) from the journal (\(interrupted) interrupted mid-upload)")
        }
    }

    /// Writes `content` as the whole staging file at `path`, fsynced.
    private static func restore(_ content: [UInt8], to path: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError.cacheFailure("restoring the staged copy \(path): \(FileSystem.lastErrorText())") }
        defer { Glibc.close(fd) }
        _ = try content.withUnsafeBytes { bytes throws(FSError) in
            try LocalFileWrite.all(fd, offset: 0, bytes: bytes, what: "the staged copy \(path)")
        }
        guard fsync(fd) == 0 else { throw FSError.cacheFailure("fsync of the staged copy \(path): \(FileSystem.lastErrorText())") }
    }

    func start() {
        condition.withLock { liveUploaders = settings.uploaders }
        for i in 0..<settings.uploaders {
            let thread = Thread { [self] in uploadLoop(i) }
            thread.name = "ncfs-upload-\(i)"
            // Not kept: a thread holds its block, which holds `self`; kept here as well, the
            // three would keep each other (and the journal's connection) alive after the drain.
            thread.start()
        }
    }

    // MARK: Staging

    /// The staged file at `path`, if any.
    func staged(_ path: String) -> StagedFile? {
        condition.lock(); defer { condition.unlock() }
        return files[path]
    }

    /// A folder's mtime was set on the server: set it again after uploads below it (see
    /// `folderTimes`).
    func folderTimeSet(_ path: String, mtime: Int64) {
        condition.lock()
        defer { condition.unlock() }
        if folderTimes[path] == nil && folderTimes.count >= Self.folderTimesLimit, let any = folderTimes.keys.first {
            folderTimes[any] = nil
        }
        folderTimes[path] = mtime
    }

    /// Whether a staged file (pending, uploading or open) lies below `folder`. Under `condition`.
    func hasStagedFiles(below folder: String) -> Bool {
        let prefix = folder.isEmpty ? "" : folder + "/"
        return files.keys.contains { $0.hasPrefix(prefix) }
    }

    /// The recorded folder times above `uploaded` with nothing pending below them any more,
    /// deepest first (setting a folder's mtime on Nextcloud may move its parent's, so parents
    /// go after their children). Under `condition`.
    func folderTimesDue(after uploaded: String) -> [(path: String, mtime: Int64)] {
        guard !folderTimes.isEmpty else { return [] }
        var due: [(path: String, mtime: Int64)] = []
        var folder = PathBytes.split(uploaded).parent
        while true {
            if let mtime = folderTimes[folder], !hasStagedFiles(below: folder) { due.append((folder, mtime)) }
            if folder.isEmpty { break }
            folder = PathBytes.split(folder).parent
        }
        return due
    }

    /// Staged files (for `ncfs status` figures and the unmount drain).
    var pending: (count: Int, bytes: Int64, failed: Int) {
        condition.lock(); defer { condition.unlock() }
        var result = (count: 0, bytes: Int64(0), failed: 0)
        for file in files.values {
            file.lock.lock()
            if file.needsUpload || file.dirty || file.upload.writers > 0 {
                result.count += 1
                result.bytes += file.size
                if file.upload.failedPermanently { result.failed += 1 }
            }
            file.lock.unlock()
        }
        return result
    }

    /// What became of a file still open for writing when the mount ended (`abandonOpenWriters`).
    enum Abandoned: Sendable, Equatable {
        /// Never closed: not uploaded, its staging copy removed.
        case discarded(path: String, bytes: Int64)
        /// Closed before and unchanged since: its last closed version is uploaded as usual.
        case uploaded(path: String)
        /// Closed before, then partly rewritten: kept in the journal and uploaded at the next
        /// mount, as after a crash (a row holding the bytes restores the recorded version; a
        /// larger file goes up as its staging copy stands).
        case kept(path: String)
    }

    /// The mount has ended while programs still held files open for writing: their closes
    /// will never come (the kernel sends no release to a daemon that is gone). A file never
    /// closed had nothing promised: its partial content is not uploaded and its staging copy
    /// is removed (the next mount would remove it too, but only then). A file closed before
    /// keeps what its close promised. Returns what became of each, for the daemon's log.
    func abandonOpenWriters() -> [Abandoned] {
        var leftovers: [String] = []
        defer { for path in leftovers { unlink(path) } }
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        var result: [Abandoned] = []
        for (path, file) in files.sorted(by: { $0.key < $1.key }) {
            file.lock.lock()
            guard file.upload.writers > 0 else { file.lock.unlock(); continue }
            let effects = file.upload.writersAbandoned(at: clock.now, due: file.journalID != nil && !file.contentChanged)
            if file.journalID == nil {
                file.removed = true
                leftovers.append(file.stagingPath)
                result.append(.discarded(path: path, bytes: file.size))
                file.lock.unlock()
                files[path] = nil
                overlay.unstage(path, file, replacement: nil)
                apply(effects, to: file)
            } else if !file.contentChanged {
                result.append(.uploaded(path: path))
                file.lock.unlock()
                apply(effects, to: file)
            } else {
                result.append(.kept(path: path))
                file.lock.unlock()
                // Its row stays for the next start; the drain does not wait for it.
                files[path] = nil
                _ = schedule.announce(file, nil)
            }
        }
        return result
    }

    /// Whether nothing happens here before the clock moves on: no upload runs, and every
    /// uploader sleeps until a time still to come, none woken since. A test that runs a manual
    /// clock forward event by event asks this before moving it (what an uploader does next
    /// depends on when it wakes).
    func waitsForTime() -> Bool {
        condition.withLock { activeUploads == 0 && schedule.allSleep(uploaders: liveUploaders, after: clock.now) }
    }

    /// Stops taking new uploads after waiting up to `timeout` for the pending ones. Returns
    /// how many are left in the journal for the next start.
    func drain(timeout: Double) -> Int {
        let deadline = clock.now.addingTimeInterval(timeout)
        condition.lock()
        drainDeadline = deadline
        for file in files.values {
            let effects = file.lock.withLock { file.upload.drainStarts(at: clock.now) }
            apply(effects, to: file)
        }
        condition.broadcast()
        while true {
            let left = files.values.filter { file in file.lock.withLock { file.needsUpload || file.upload.uploading } }
            let retryable = left.contains { file in file.lock.withLock { !file.upload.failedPermanently } }
            if left.isEmpty || !retryable || !clock.wait(condition, until: deadline) {
                stopping = true
                condition.broadcast()
                // Running uploads finish (their journal rows stay until they do), including
                // the staging files they delete once `condition` is released.
                while activeUploads > 0 {
                    _ = clock.wait(condition, until: clock.now.addingTimeInterval(1))
                }
                let count = files.values.filter { file in file.lock.withLock { file.needsUpload } }.count
                condition.unlock()
                return count
            }
        }
    }
}
