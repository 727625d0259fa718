import Foundation

/// Where the background machinery reads the time and waits for it. Its users:
/// - write-back (`FileSystem.WriteOptions.clock`): the settle delay after a close, a failed
///   upload's backoff, the batch linger, the fsync and drain timeouts;
/// - the attribute sync (the same clock): the coalescing delay, the re-look backoff, the
///   drain's pause between passes;
/// - ingest (`IngestService.Settings.clock`): the quiet delay, retry backoffs, the
///   scheduler's sleeps, the stop's deadline, the catalog's times and the day of the date path.
///
/// Production uses the wall clock (`SystemTime`); a test passes a clock it advances by hand,
/// so that a test of a delay needs no sleep of that length. Left on the wall clock on purpose:
/// the timeout of a real child process (`ncfs-derive`) and the attribute database's commit
/// window, which pace real work rather than behaviour.
public protocol TimeSource: Sendable {
    var now: Date { get }
    /// `condition.wait(until:)` on this clock: the caller holds `condition`; returns false
    /// when `deadline` passed without a signal (as `NSCondition.wait(until:)` does).
    func wait(_ condition: NSCondition, until deadline: Date) -> Bool
}

/// The wall clock.
public struct SystemTime: TimeSource {
    public init() {}
    public var now: Date { Date() }
    public func wait(_ condition: NSCondition, until deadline: Date) -> Bool {
        // corelibs Foundation's `wait(until:)` traps on a deadline as far as `.distantFuture`
        // (its conversion to a timespec overflows): a wait for "no deadline" has none.
        guard deadline.timeIntervalSinceNow < 1e8 else {
            condition.wait()
            return true
        }
        return condition.wait(until: deadline)
    }
}
