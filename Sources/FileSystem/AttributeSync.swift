import Foundation
import Logging
import RemoteCache
import WebDAV

/// Stores mode and owner changes on the server in the background: one PROPPATCH of the
/// `posix` dead property per changed file, never on the path of the change itself.
///
/// Changes coalesce: the thread wakes `delay` after the first change it was told of, so a
/// `chmod` followed by a `chown` (what `cp -a`, `rsync -a` and `tar x` do) costs one request.
/// A file whose content is still waiting for its upload is skipped until the upload is done
/// (the server has no file to attach the property to yet). What is pending at unmount stays
/// in `attributes.sqlite` and goes out at the next mount.
final class AttributeSync: @unchecked Sendable {
    // @unchecked: `woken`, `stopped` and `running` are guarded by `condition`; the rest is
    // immutable or has its own lock.
    private let store: AttributeStore
    private let client: WebDAVClient
    /// Whether `path` has content still waiting for its upload.
    private let isStaged: @Sendable (String) -> Bool
    private let logger: Logger
    private let delay: Double
    private let condition = NSCondition()
    private var woken = true
    private var stopped = false
    private var running = false

    init(store: AttributeStore, client: WebDAVClient, delay: Double = 0.5, logger: Logger,
         isStaged: @escaping @Sendable (String) -> Bool) {
        self.store = store
        self.client = client
        self.delay = delay
        self.logger = logger
        self.isStaged = isStaged
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
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && syncOnce() > 0 { usleep(200_000) }
        condition.lock(); stopped = true; condition.signal()
        while running { condition.wait() }
        condition.unlock()
        return store.pending(limit: .max).count
    }

    private func loop() {
        condition.lock()
        running = true
        while !stopped {
            // Without news, a look every 2 s anyway: files skipped for their pending upload.
            if !woken { _ = condition.wait(until: Date().addingTimeInterval(2)) }
            if stopped { break }
            let news = woken
            woken = false
            condition.unlock()
            if news { usleep(useconds_t(delay * 1_000_000)) }
            _ = syncOnce()
            condition.lock()
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }

    /// One pass over the pending changes; returns how many are left.
    @discardableResult
    func syncOnce() -> Int {
        var left = 0
        for (path, posix) in store.pending(limit: 256) {
            if isStaged(path) { left += 1; continue }
            do {
                try client.setPosixProperty(path, posix.property)
                store.stored(path, posix)
            } catch let error as DAVError where error.kind == .notFound {
                // Gone from the server (deleted by another client): nothing to keep for it.
                store.remove(path, tree: false)
            } catch {
                left += 1
                logger.warning("storing the mode and owner of /\(path) on the server failed (retried): \(error)")
            }
        }
        return left
    }
}
