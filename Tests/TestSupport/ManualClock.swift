import FileSystemInterface
import Foundation

/// A clock that moves only when a test advances it: a test of the settle delay, a retry's
/// backoff or the batch linger waits for nothing. A wait on it ends when its condition is
/// signalled, or when `advance` reaches its deadline (`advance` broadcasts every condition
/// being waited on; the waiter looks again).
public final class ManualClock: TimeSource, @unchecked Sendable {
    // @unchecked: `time` and `waiting` are guarded by `lock`, a leaf lock (a waiter's condition
    // is taken after releasing it, never while holding it).
    private let lock = NSLock()
    private var time: Date
    /// The conditions being waited on, with how many waiters each.
    private var waiting: [ObjectIdentifier: (condition: NSCondition, waiters: Int)] = [:]

    public init(start: Date = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))) {
        time = start
    }

    public var now: Date { lock.withLock { time } }

    public func advance(by seconds: Double) {
        let conditions = lock.withLock {
            time += seconds
            return waiting.values.map(\.condition)
        }
        for condition in conditions {
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    public func wait(_ condition: NSCondition, until deadline: Date) -> Bool {
        let id = ObjectIdentifier(condition)
        // Registered before the time is read, under one lock: an `advance` either sees the
        // waiter (and broadcasts once the waiter sleeps: it holds `condition` until then), or
        // came before, and the time read here is already the new one.
        let passed = lock.withLock {
            guard time < deadline else { return true }
            waiting[id, default: (condition, 0)].waiters += 1
            return false
        }
        if passed { return false }
        condition.wait()
        return lock.withLock {
            waiting[id]!.waiters -= 1
            if waiting[id]!.waiters == 0 { waiting[id] = nil }
            return time < deadline
        }
    }
}

/// The wall clock's pace from a fixed start: delays pass by themselves, as on the wall clock,
/// but the date is the one the test chose, so a test that names "today" (a day folder) and
/// then waits for work dated by the clock cannot see midnight pass in between (unless it runs
/// for longer than the start leaves to midnight).
public struct ShiftedClock: TimeSource {
    /// From the wall clock to this one.
    private let offset: TimeInterval

    public init(start: Date) { offset = start.timeIntervalSinceNow }

    public var now: Date { Date().addingTimeInterval(offset) }

    public func wait(_ condition: NSCondition, until deadline: Date) -> Bool {
        SystemTime().wait(condition, until: deadline.addingTimeInterval(-offset))
    }
}
