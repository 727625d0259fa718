import Foundation
import RemoteCache

/// Read-ahead for tree walks (`du`, `find`, `ls -R`, `rsync` of a tree, a file manager's
/// folder size). Such a walker lists one folder after another and waits for each PROPFIND in
/// turn; this lets the next ones run while it works.
///
/// The signal is a folder opened within `descent` of its parent: the walker is going down
/// through the parent's subfolders. The parent's next `window` subfolders after the one just
/// opened (in listing order, the order readdir gives them) that have never been listed are
/// then listed in the background, `width` at a time. Each further subfolder the walker opens
/// moves the window on. A folder interactively opened right after its parent costs at most
/// `window` listings nobody asked for; a walker that visits everything costs no extra
/// request at all (each folder is still listed once, by whoever asks first: the metadata
/// cache runs one fetch per folder and makes the other wait for it).
///
/// A failed background listing is dropped: the walker's own open asks again and gets the
/// error itself.
final class FolderWalkAhead: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`; `cache`, `pool` and the options
    // are immutable.

    struct Options: Sendable {
        /// Subfolders listed ahead of the one the walker opened (0: none).
        var window: Int
        /// Background listings at a time.
        var width: Int
        /// A folder opened this soon after its parent counts as a walk going down.
        var descent: UInt64 = 1_000_000_000
        /// Folders waiting for a background listing; older ones are dropped past this.
        var queueLimit = 64
        /// Entries looked at after the opened folder to find the next subfolders.
        var scanLimit = 4096
    }

    private let cache: MetadataCache
    private let pool: WorkerPool
    private let options: Options

    private let lock = NSLock()
    /// Folders opened recently → monotonic time (ns) of their last open or child open.
    private var opened: [String: UInt64] = [:]
    private var queued: [String] = []
    private var pending: Set<String> = []
    private var running = 0
    /// Background listings started (for tests).
    private var started = 0

    init(cache: MetadataCache, pool: WorkerPool, options: FileSystem.WalkAhead) {
        self.cache = cache
        self.pool = pool
        self.options = Options(window: options.window, width: max(1, options.width))
    }

    /// Number of background listings started so far.
    var listingsStarted: Int {
        lock.lock(); defer { lock.unlock() }
        return started
    }

    /// Tells the walk-ahead that the folder at `path` was opened (its listing is cached).
    /// `skip` names paths never listed ahead (incoming/, which is not a remote folder).
    func opened(_ path: String, skip: (String) -> Bool) {
        let now = MetadataCache.now()
        let (parent, name) = MetadataCache.split(path)
        lock.lock()
        let descending = !path.isEmpty && opened[parent].map { now &- $0 < options.descent } ?? false
        if descending { opened[parent] = now }
        record(path, at: now)
        lock.unlock()
        guard descending, options.window > 0, let listing = cache.cachedListing(parent),
              let position = listing.position(of: name) else { return }
        schedule(nextSubfolders(of: listing, after: position, skip: skip))
    }

    /// Paths of the next `window` subfolders after `position` that were never listed.
    private func nextSubfolders(of listing: FolderListing, after position: Int, skip: (String) -> Bool) -> [String] {
        var found: [String] = []
        var seen = 0
        var i = position + 1
        let end = min(listing.children.count, position + 1 + options.scanLimit)
        while i < end && seen < options.window {
            let child = listing.children[i]
            i += 1
            guard child.isDirectory else { continue }
            seen += 1
            let path = listing.childPath(child.name)
            if cache.cachedListing(path) == nil && !skip(path) { found.append(path) }
        }
        return found
    }

    /// Notes `path` as opened at `now` (caller holds `lock`).
    private func record(_ path: String, at now: UInt64) {
        opened[path] = now
        if opened.count > 256 {
            opened = opened.filter { now &- $0.value < options.descent }
            // Hundreds of folders opened within a second: a walk of cached folders, which needs
            // no help. Starting over keeps every call cheap.
            if opened.count > 256 { opened = [path: now] }
        }
    }

    private func schedule(_ paths: [String]) {
        guard !paths.isEmpty else { return }
        lock.lock()
        for path in paths where !pending.contains(path) {
            pending.insert(path)
            queued.append(path)
        }
        if queued.count > options.queueLimit {
            let dropped = queued.prefix(queued.count - options.queueLimit)
            for path in dropped { pending.remove(path) }
            queued.removeFirst(dropped.count)
        }
        let workers = max(0, min(options.width - running, queued.count))
        running += workers
        lock.unlock()
        for _ in 0..<workers { pool.submit { [self] in work() } }
    }

    /// One background worker: lists queued folders until the queue is empty.
    private func work() {
        while let path = next() {
            _ = try? cache.listing(path)
            lock.lock()
            pending.remove(path)
            lock.unlock()
        }
    }

    private func next() -> String? {
        lock.lock(); defer { lock.unlock() }
        guard !queued.isEmpty else { running -= 1; return nil }
        started += 1
        return queued.removeFirst()
    }
}
