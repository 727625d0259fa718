import FileSystemInterface
import Foundation
import WebDAV
public import Logging
public import WebDAV

/// The pipeline behind `incoming/`: takes each file once its writer closed it and it has been
/// quiet for `quietDelay`, enters it in the catalog, and works every item to a final state:
///
///     pending ──hash, duplicate check, date path reserved──▶ uploading
///     uploading ──original PUT (If-None-Match: *), verified──▶ deriving
///     deriving ──ncfs-derive, derivatives PUT──▶ succeeded
///
/// Each state is committed before the step it names starts, and every step can run again
/// after a crash without writing anything twice: the original's path is reserved in the
/// catalog before its PUT, the PUT only creates, and a 412 is resolved by comparing the
/// server's checksum with the item's. A failing step is retried with exponential backoff and
/// the item marked `failed` after `maxAttempts` (or at once for failures retrying cannot fix).
///
/// Threads: one scheduler thread (candidates, due items) and `workers` worker threads, one
/// item each at a time. `lock` guards the scheduler's state; the filesystem's changes to a
/// file (`permitChange`) run under it too, which is what makes "a file being processed never
/// changes" hold.
public final class IngestService: IncomingObserver, @unchecked Sendable {
    // @unchecked: mutable state is guarded by `condition`'s lock (`candidates`, `inFlight`,
    // `stopped`) or by `foldersLock` (`knownFolders`); the rest is immutable after init.

    public enum DateSource: String, Sendable, CaseIterable {
        /// The day the file was ingested.
        case ingest
        /// The photo's EXIF capture date where it has one, else the ingest day.
        case exif
    }

    /// Public URLs through a share link: `<base>/public.php/dav/files/<token>/<path under sharePath>`.
    public struct PublicShare: Sendable {
        public var token: String
        /// Scheme and host (and any path Nextcloud lives under), no trailing slash.
        public var base: String
        /// The shared folder, relative to the mount root.
        public var sharePath: String
        public init(token: String, base: String, sharePath: String) {
            self.token = token
            self.base = base
            self.sharePath = sharePath
        }
    }

    public struct Settings: Sendable {
        /// Where originals and derivatives go, relative to the mount root.
        public var prefix = "pindeck/media-uploads"
        public var timeZone = TimeZone.current
        public var dateSource = DateSource.ingest
        /// Seconds a closed file must stay untouched before it is taken.
        public var quietDelay: Double = 2
        /// Items worked on at once: enough that uploads (network) overlap derivations (CPU).
        public var workers = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
        /// `ncfs-derive` processes running at once: the bounded derivative pool, one per core
        /// by default, so a 10,000-file import never holds more than this many decoded images.
        public var deriveWorkers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        public var maxAttempts = 8
        /// Backoff after the n-th failure: min(cap, base × 2^(n-1)) seconds, ±25 % jitter.
        public var retryBase: Double = 2
        public var retryCap: Double = 300
        /// The `ncfs-derive` executable.
        public var deriveTool: URL
        public var deriveTimeout: Double = 600
        public var previewEdge = 2048
        /// Derivatives are made here (`<id>/`) and kept until the item succeeded, so a resumed
        /// item uploads the same files.
        public var workDirectory: URL
        public var publicShare: PublicShare?
        /// Also create a public link per original through the OCS share API.
        public var shareLinks = false
        /// Originals above this go up in chunks.
        public var chunkThreshold: Int64 = 10 << 20
        /// An original up to this size goes up with its derivatives in one bulk request where
        /// the server offers bulk upload (Nextcloud holds each part in PHP memory, and so do we
        /// while sending); larger ones by PUT, their derivatives still in one request.
        public var bulkUpload = true
        public var bulkLimit: Int64 = 8 << 20
        /// Where the service reads the time and waits for it: the quiet delay, retry
        /// backoffs, the scheduler's sleeps, the stop's deadline, the catalog's times and the
        /// ingest day of the date path. The wall clock in the daemon; tests advance or pin one.
        public var clock: any TimeSource = SystemTime()

        /// What `RemoteStore.route` decides a file's way to the server by.
        public var uploadLimits: UploadLimits { UploadLimits(bulk: bulkUpload, bulkMax: bulkLimit, chunkAbove: chunkThreshold) }

        public init(deriveTool: URL, workDirectory: URL) {
            self.deriveTool = deriveTool
            self.workDirectory = workDirectory
        }
    }

    public let settings: Settings
    /// `settings.clock`.
    var clock: any TimeSource { settings.clock }
    public let catalog: any Catalog
    let folder: any IncomingStaging
    /// The server (a `WebDAVClient` in the daemon, an in-memory store in tests).
    let store: any IngestStore
    let logger: Logger
    /// Told the remote folders a finished item wrote to, and the parents of folders it made
    /// (to drop their cached listings), and the incoming path it left (to drop the kernel's
    /// entry).
    let onFinished: @Sendable (_ remoteFolders: [String], _ leftIncoming: String?) -> Void

    private let condition = NSCondition()
    /// Staged files waiting to be quiet: path → when they may be taken.
    private var candidates: [String: Date] = [:]
    /// Items a worker holds: id → staging path.
    private var inFlight: [Int64: String] = [:]
    private var stopped = false
    private var scheduler: Thread?
    private let pool: WorkerPool
    /// Slots of the derivative pool (`deriveWorkers`).
    let deriveSlots: DispatchSemaphore
    let foldersLock = NSLock()
    /// Held while `ensureFolder` makes folders (taken before `foldersLock`, never inside it).
    let folderMaking = NSLock()
    /// Held while a worker picks a name and commits its reservation: names are unique by the
    /// catalog's index, but stems (which derivatives are named by) only by this.
    let reservationLock = NSLock()
    /// Remote folders known to exist (MKCOL once each).
    var knownFolders: Set<String> = []
    /// What each original folder holds on the server (name → checksums), listed once per
    /// batch and kept up to date with this batch's own uploads. Someone else's upload after the
    /// listing is caught by the PUT's If-None-Match (412) instead.
    ///
    /// A batch is the work between two moments the queue is idle (nothing taken, due or in
    /// flight): at each such moment this and `knownFolders` are forgotten, so files deleted on
    /// the server between two drops are seen (a re-dropped file is uploaded again, not recorded
    /// as a duplicate of a file that is gone), at the price of one listing per folder per batch.
    var originalsOnServer: [String: [String: [String]]] = [:]
    /// Held while a folder is listed, so workers starting a batch together list it once.
    let listingLock = NSLock()

    public init(settings: Settings, catalog: any Catalog, folder: any IncomingStaging, store: any IngestStore, logger: Logger,
                onFinished: @escaping @Sendable ([String], String?) -> Void) throws {
        self.settings = settings
        self.catalog = catalog
        self.folder = folder
        self.store = store
        self.logger = logger
        self.onFinished = onFinished
        pool = WorkerPool(threads: settings.workers, name: "ingest")
        deriveSlots = DispatchSemaphore(value: settings.deriveWorkers)
        try FileManager.default.createDirectory(at: settings.workDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    /// Tidies what a previous run left (finished items whose staged file or work folder is
    /// still there), makes every untaken staged file a candidate, and starts the scheduler.
    public func start() {
        recover()
        folder.observer = self
        let thread = Thread { [self] in schedule() }
        thread.name = "ingest-scheduler"
        scheduler = thread
        thread.start()
    }

    /// Stops taking new work; items in flight finish their current step (their state is in the
    /// catalog either way, so the next start resumes them).
    public func stop(timeout: Double) -> Int {
        condition.lock()
        stopped = true
        condition.broadcast()
        let deadline = clock.now.addingTimeInterval(timeout)
        while !inFlight.isEmpty && clock.wait(condition, until: deadline) {}
        let left = inFlight.count
        condition.unlock()
        pool.stop()
        return left
    }

    // MARK: IncomingObserver

    public func permitChange<T>(_ paths: [String], _ change: () throws(FSError) -> T) throws(FSError) -> T {
        condition.lock()
        defer { condition.unlock() }
        let busy = Set(inFlight.values)
        for path in paths where busy.contains(path) { throw .busy }
        return try change()
    }

    public func changed(_ path: String) {
        let name = PathBytes.components(path).last ?? ""
        guard !IncomingNames.isTemporaryName(name) else { return }
        condition.lock()
        candidates[path] = clock.now.addingTimeInterval(settings.quietDelay)
        condition.signal()
        condition.unlock()
    }

    public func removed(_ path: String) {
        condition.lock()
        defer { condition.unlock() }
        candidates[path] = nil
        do {
            guard var item = try catalog.inIncoming(stagingPath: path) else { return }
            if item.state == .pending && item.originalPath == nil {
                try catalog.remove(item.id)
                logger.info("ingest: incoming/\(path) removed before it was persisted; item \(item.id) dropped")
            } else {
                // It may have reached the server already: keep the record, without its file.
                item.stagingPath = nil
                if item.state != .failed { item.finishedAt = clock.now }
                item.state = .failed
                item.persistError = (item.persistError.map { $0 + "; " } ?? "") + "the staged copy was deleted from incoming/"
                try catalog.update(item)
            }
        } catch {
            logger.error("ingest: recording the removal of incoming/\(path): \(error)")
        }
    }

    public func attributes(_ path: String) -> [String: String] {
        let name = PathBytes.components(path).last ?? ""
        if IncomingNames.isTemporaryName(name) { return ["user.ncfs.status": "temporary"] }
        guard let item = try? catalog.inIncoming(stagingPath: path) else { return ["user.ncfs.status": "waiting"] }
        var attributes = ["user.ncfs.status": item.state.rawValue, "user.ncfs.id": String(item.id)]
        if let error = item.persistError ?? item.derivativeError { attributes["user.ncfs.error"] = error }
        if let remote = item.originalPath { attributes["user.ncfs.remote_path"] = remote }
        return attributes
    }

    // MARK: Scheduling

    private func recover() {
        do {
            for var item in try catalog.finishedWithStagedFile() {
                if let staged = item.stagingPath, matches(item, stagedAt: staged) {
                    unlink(folder.localPath(staged))
                }
                item.stagingPath = nil
                try catalog.update(item)
            }
        } catch {
            logger.error("ingest: tidying finished items: \(error)")
        }
        removeLeftWorkFolders()
        let now = clock.now
        let taken = Set(((try? catalog.allInIncoming()) ?? []).compactMap(\.stagingPath))
        for path in Self.untakenFiles(in: folder.root, taken: taken) { candidates[path] = now }
        if !candidates.isEmpty { logger.info("ingest: \(candidates.count) staged file(s) from an earlier run to take") }
    }

    /// Removes the work folders (`<id>/`, the derivatives made for an item) of items that are
    /// done or no longer in the catalog: a crash between an item's final commit and `finish`
    /// left them, and nothing else would ever remove them. Those of items still in incoming/
    /// (active, or failed and retryable) stay for the item's next attempt; a folder whose item
    /// cannot be read now stays too.
    private func removeLeftWorkFolders() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: settings.workDirectory.path)) ?? []
        for name in names {
            guard let id = Int64(name) else { continue }
            do {
                if let item = try catalog.item(id), item.state.isInIncoming { continue }
            } catch {
                logger.error("ingest: reading item \(id) for its work folder: \(error)")
                continue
            }
            try? FileManager.default.removeItem(at: settings.workDirectory.appendingPathComponent(name))
            logger.info("ingest: removed the work folder of item \(id), which an earlier run left")
        }
    }

    /// Regular files under the staging folder `root` (relative paths) with real names that no
    /// item in `taken` holds: what a crash left before it was taken, or what is still waiting.
    public static func untakenFiles(in root: URL, taken: Set<String>) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: root.path)) ?? []).filter { path in
            var st = stat()
            return lstat(root.appendingPathComponent(path).path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
                && !taken.contains(path) && !IncomingNames.isTemporaryName(PathBytes.components(path).last ?? "")
        }
    }

    /// Whether the staged file still is the one the item describes (size and mtime).
    func matches(_ item: IngestItem, stagedAt path: String) -> Bool {
        var st = stat()
        return lstat(folder.localPath(path), &st) == 0 && Int64(st.st_size) == item.size && Int64(st.st_mtim.tv_sec) == item.sourceMtime
    }

    private func schedule() {
        var wasIdle = false
        condition.lock()
        while !stopped {
            let now = clock.now
            let ready = quietCandidates(now: now)
            if !ready.isEmpty {
                // Catalog commits (an fsync each) run without the lock: the FUSE threads take
                // it on every close and open for writing.
                condition.unlock()
                let retry = take(ready, now: now)
                condition.lock()
                for path in retry where candidates[path] == nil { candidates[path] = now.addingTimeInterval(settings.quietDelay) }
            }
            dispatchDueItems(now: now)
            var wake = now.addingTimeInterval(1)
            if let next = candidates.values.min(), next < wake { wake = next }
            let nextDue = inFlight.count < settings.workers ? (try? catalog.nextDue()) : nil
            if inFlight.count < settings.workers, let due = nextDue, due < wake { wake = max(due, now.addingTimeInterval(0.05)) }
            let idle = inFlight.isEmpty && candidates.isEmpty && nextDue == nil
            if idle && !wasIdle { forgetServerKnowledge() }
            wasIdle = idle
            _ = clock.wait(condition, until: wake)
        }
        condition.unlock()
    }

    /// Candidates quiet long enough and not open for writing, removed from `candidates`.
    /// Called with the lock held.
    private func quietCandidates(now: Date) -> [String] {
        var ready: [String] = []
        for (path, readyAt) in candidates where readyAt <= now {
            if folder.isOpenForWriting(path) {
                candidates[path] = now.addingTimeInterval(settings.quietDelay)
            } else {
                candidates[path] = nil
                ready.append(path)
            }
        }
        return ready
    }

    /// Enters quiet files in the catalog (a file changed again meanwhile is back among the
    /// candidates, and `dispatchDueItems` waits for it). Returns the paths to try again.
    private func take(_ paths: [String], now: Date) -> [String] {
        var retry: [String] = []
        for path in paths.sorted() {
            var st = stat()
            guard lstat(folder.localPath(path), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            let size = Int64(st.st_size), mtime = Int64(st.st_mtim.tv_sec)
            do {
                if var item = try catalog.inIncoming(stagingPath: path) {
                    guard item.state == .pending || item.state == .failed else { continue }
                    guard item.size != size || item.sourceMtime != mtime || item.state == .failed else { continue }
                    // Rewritten before it was persisted: start over with the new content.
                    item.size = size
                    item.sourceMtime = mtime
                    item.sha256 = nil
                    item.state = .pending
                    item.attempts = 0
                    item.persistError = nil
                    item.finishedAt = nil
                    item.nextAttemptAt = now
                    try catalog.update(item)
                } else {
                    let name = PathBytes.components(path).last ?? ""
                    let item = try catalog.add(name: name, stagingPath: path, bucket: settings.prefix, size: size, sourceMtime: mtime, now: now)
                    logger.debug("ingest: took incoming/\(path) as item \(item.id)")
                }
            } catch {
                logger.error("ingest: taking incoming/\(path): \(error); trying again shortly")
                retry.append(path)
            }
        }
        return retry
    }

    /// Hands due items to free workers. Called with the lock held.
    private func dispatchDueItems(now: Date) {
        let free = settings.workers - inFlight.count
        guard free > 0 else { return }
        let items: [IngestItem]
        do { items = try catalog.due(now: now, limit: free, excluding: Set(inFlight.keys)) } catch {
            logger.error("ingest: reading due items: \(error)")
            return
        }
        for item in items {
            // Still being written, or rewritten and waiting to be quiet: not now.
            if let path = item.stagingPath, candidates[path] != nil || folder.isOpenForWriting(path) { continue }
            inFlight[item.id] = item.stagingPath ?? ""
            pool.submit { [self] in
                process(item)
                condition.lock()
                inFlight[item.id] = nil
                condition.broadcast()
                condition.unlock()
            }
        }
    }

    // MARK: Shared with the steps

    /// Runs `body` with the lock held (the steps' moments that must not overlap a change).
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}
