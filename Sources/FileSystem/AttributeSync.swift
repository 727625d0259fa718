import Foundation
import Logging
import RemoteCache
import WebDAV

/// Stores mode and owner changes on the server in the background: one PROPPATCH of the
/// `posix` dead property per changed file, never on the path of the change itself.
///
/// Changes coalesce: the thread wakes `delay` after the first change it was told of, so a
/// `chmod` followed by a `chown` (what `cp -a`, `rsync -a` and `tar x` do) costs one request.
/// A new file is skipped until its first upload is done (the server has no file to attach the
/// property to yet); a file already on the server gets its property at once, even while a
/// new version of its content waits for upload (Nextcloud keeps dead properties across PUTs). What is pending at unmount stays
/// in `attributes.sqlite` and goes out at the next mount.
///
/// Every delay (the coalescing `delay`, the re-look, the drain's pause between passes) is
/// read and waited for on the injected `clock`, the one write-back uses: tests advance it by
/// hand. The thread waits on `condition`, so a stop ends its wait at once.
final class AttributeSync: @unchecked Sendable {
    // @unchecked: `woken`, `stopped`, `running` and `relookAt` are guarded by `condition`; the
    // rest is immutable or has its own lock.
    private let store: AttributeStore
    private let client: any RemoteStore
    /// Whether `path` is a new file whose first upload has not finished.
    private let awaitsUpload: @Sendable (String) -> Bool
    private let logger: Logger
    private let delay: Double
    private let clock: any TimeSource
    private let condition = NSCondition()
    private var woken = true
    private var stopped = false
    private var running = false
    /// When the thread looks again by itself at what is left over; nil while it waits for
    /// news only, or is in a pass.
    private var relookAt: Date?
    /// Held around each PROPPATCH (and by `FileSystem.symlink` around making a link): a mode
    /// queued for a file that is then replaced by a link at the same name (GNU tar's
    /// placeholder for a link it makes last) must not land after the link's marker.
    let requestLock = NSLock()

    init(store: AttributeStore, client: any RemoteStore, delay: Double = 0.5, clock: any TimeSource = SystemTime(),
         logger: Logger, awaitsUpload: @escaping @Sendable (String) -> Bool) {
        self.store = store
        self.client = client
        self.delay = delay
        self.clock = clock
        self.logger = logger
        self.awaitsUpload = awaitsUpload
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "ncfs-attributes"
        thread.start()
    }

    /// A change was recorded: sync within `delay`.
    func wake() {
        condition.lock(); woken = true; condition.signal(); condition.unlock()
    }

    /// Stores what is pending, waiting up to `timeout`, then stops the thread. Returns how
    /// many changes are left for the next mount.
    func drain(timeout: Double) -> Int {
        let deadline = clock.now.addingTimeInterval(timeout)
        // Until nothing is left, or a pass stored nothing more (what is left waits for uploads
        // that are themselves left for the next mount, or for a server that keeps failing).
        var left = syncOnce().left, previous = Int.max
        while left > 0 && left < previous && clock.now < deadline {
            pause(until: min(deadline, clock.now.addingTimeInterval(0.2)))
            previous = left
            left = syncOnce().left
        }
        condition.lock(); stopped = true; condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
        return store.pending(limit: .max).count
    }

    /// When the thread will look again by itself at the changes left over (nil: it waits for
    /// news, or is in a pass). For tests, which advance the clock to it.
    var nextLook: Date? { condition.withLock { relookAt } }

    private func loop() {
        condition.lock()
        running = true
        var left = 0
        // Passes in a row in which a request failed for a passing reason.
        var failedPasses = 0
        while !stopped {
            // Without news, another look while changes are left over: in 2 s for files waiting
            // for their first upload, backing off to a minute while the server keeps failing;
            // else sleep until woken.
            if !woken {
                if left > 0 {
                    let pause = failedPasses > 0 ? Self.relook.delay(afterFailures: failedPasses) : Self.relook.base
                    let until = clock.now.addingTimeInterval(pause)
                    relookAt = until
                    // `wait` returns true when signalled (news, a stop) or woken early by the
                    // clock; the deadline is what ends it otherwise.
                    while !woken && !stopped && clock.wait(condition, until: until) {}
                    relookAt = nil
                } else {
                    condition.wait()
                }
            }
            if stopped { break }
            if woken {
                // News: the changes of the next `delay` go in the same pass (a chmod, then
                // the chown of the same file). What arrives meanwhile is in this pass too.
                let until = clock.now.addingTimeInterval(delay)
                while !stopped && clock.wait(condition, until: until) {}
                if stopped { break }
                woken = false
            }
            condition.unlock()
            let pass = syncOnce()
            left = pass.left
            failedPasses = pass.failed > 0 ? failedPasses + 1 : 0
            condition.lock()
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }

    /// Waits on the clock until `deadline` (the drain's pause between passes), on a condition
    /// of its own: nothing but the clock ends it, and the thread's signals stay the thread's.
    private func pause(until deadline: Date) {
        let pause = NSCondition()
        pause.lock()
        while clock.wait(pause, until: deadline) {}
        pause.unlock()
    }

    /// Answers that say "no" rather than "not now": what is not transient, except a wrong
    /// login (fixed by the user, then the change goes out) and a 404 (handled apart: the file
    /// is gone); and, for PROPPATCH alone, a 405 or 501 or an answer that is not a multistatus
    /// (a server without dead properties).
    static func isRefusal(_ error: DAVError) -> Bool {
        switch error.kind {
        case .notFound, .unauthorized: return false
        case .protocolViolation: return true
        case .server: return error.status == 405 || error.status == 501
        case let kind: return !kind.isTransient
        }
    }

    /// The re-look after a pass that left changes over: 2 s, and after failed passes 2 s
    /// doubling to a minute, ±20 % (mounts that lost the same server do not all come back at once).
    static let relook = Backoff(base: 2, cap: 60, jitter: 0.2)

    /// One pass over the pending changes; returns how many are left, and how many of those
    /// because their request failed.
    @discardableResult
    func syncOnce() -> (left: Int, failed: Int) {
        var left = 0, failed = 0
        for (path, posix) in store.pending(limit: .max) {
            if awaitsUpload(path) { left += 1; continue }
            requestLock.lock()
            defer { requestLock.unlock() }
            // Still wanted: the record may have changed, or gone with its file, since the pass began.
            guard let record = store.record(path), record.pending, record.posix == posix else { continue }
            do {
                try client.setPosixProperty(path, posix.property)
                store.stored(path, posix)
            } catch let error as DAVError where error.kind == .notFound {
                // Gone from the server (deleted by another client): nothing to keep for it.
                store.remove(path, tree: false)
            } catch let error as DAVError where AttributeSync.isRefusal(error) {
                // Asking again will not help (a share without the right to change properties,
                // a server without dead properties): kept by this mount only.
                store.stored(path, posix)
                logger.warning("the server refused to store the mode and owner of /\(path); this mount keeps them, other mounts show the defaults: \(error)")
            } catch {
                left += 1
                failed += 1
                logger.warning("storing the mode and owner of /\(path) on the server failed (retried): \(error)")
            }
        }
        return (left, failed)
    }
}
