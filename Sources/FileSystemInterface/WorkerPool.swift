import Foundation

/// A fixed set of threads running blocking jobs: FUSE requests that may wait on the network,
/// content fetches, walk-ahead listings, ingest items. The FUSE loop's threads hand such
/// requests over and answer themselves only those that never wait on the server (writes and
/// flushes to local staging files, reads of bytes already cached, xattr names ncfs never has);
/// the Swift concurrency pool is never used for them (its few threads must not block). An idle
/// thread costs only its stack.
public final class WorkerPool: @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are guarded by `condition`'s lock.
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var head = 0
    private var stopped = false

    public init(threads: Int, name: String) {
        for i in 0..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "\(name)-\(i)"
            thread.start()
        }
    }

    public func submit(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the threads finish the queued jobs and end.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count && !stopped { condition.wait() }
            if head == jobs.count { condition.unlock(); return }
            let job = jobs[head]
            // Drop the queue's reference now: a finished job's captures (a FUSE write's copied
            // bytes, up to 1 MiB) must not stay alive until the queue is compacted — that held
            // 80 MB of a bulk copy's write buffers.
            jobs[head] = {}
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
