import FileSystemInterface
import Foundation

/// A clock that moves only when a test advances it: a test of the settle delay, a retry's
/// backoff or the batch linger waits for nothing. A wait on it ends when its condition is
/// signalled, or when `advance` reaches its deadline (`advance` broadcasts every condition
/// being waited on; the waiter looks again).
///
/// It also tells who sleeps on it (`sleepers(on:)`) and until when (`earliestDeadline`), so that
/// a test can run time forward event by event: once every thread of the code under test sleeps
/// until a time still to come, nothing happens before the earliest such time, and the clock
/// may jump there (the in-memory model runs do this: `ModelClock`).
public final class ManualClock: TimeSource, @unchecked Sendable {
    // @unchecked: `time`, `waiters` and `nextToken` are guarded by `lock`, a leaf lock (a
    // waiter's condition is taken after releasing it, never while holding it).
    private let lock = NSLock()
    private var time: Date
    /// Each wait in progress: its condition and deadline.
    private var waiters: [UInt64: (condition: NSCondition, deadline: Date)] = [:]
    private var nextToken: UInt64 = 0

    public init(start: Date = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))) {
        time = start
    }

    public var now: Date { lock.withLock { time } }

    public func advance(by seconds: Double) {
        let conditions = lock.withLock {
            time += seconds
            return Self.distinct(waiters.values.map(\.condition))
        }
        for condition in conditions {
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Moves the clock to `date` (never back).
    public func advance(to date: Date) {
        let seconds = lock.withLock { date.timeIntervalSince(time) }
        if seconds > 0 { advance(by: seconds) }
    }

    /// How many waits on `condition` sleep until a time still to come (a wait whose deadline
    /// has passed is about to return, and does not count).
    public func sleepers(on condition: NSCondition) -> Int {
        lock.withLock { waiters.values.count { $0.condition === condition && $0.deadline > time } }
    }

    /// The earliest deadline of a wait in progress that is still to come, if any.
    public var earliestDeadline: Date? {
        lock.withLock { waiters.values.map(\.deadline).filter { $0 > time }.min() }
    }

    public func wait(_ condition: NSCondition, until deadline: Date) -> Bool {
        // Registered before the time is read, under one lock: an `advance` either sees the
        // waiter (and broadcasts once the waiter sleeps: it holds `condition` until then), or
        // came before, and the time read here is already the new one.
        let token: UInt64? = lock.withLock {
            guard time < deadline else { return nil }
            nextToken += 1
            waiters[nextToken] = (condition, deadline)
            return nextToken
        }
        guard let token else { return false }
        condition.wait()
        return lock.withLock {
            waiters[token] = nil
            return time < deadline
        }
    }

    private static func distinct(_ conditions: [NSCondition]) -> [NSCondition] {
        var seen = Set<ObjectIdentifier>()
        return conditions.filter { seen.insert(ObjectIdentifier($0)).inserted }
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
