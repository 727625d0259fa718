@testable import FileSystem
import Foundation
import Synchronization
import TestSupport

/// Virtual time for the model runs: the write-back's clock is a `ManualClock` that
/// runs forward event by event. It moves only while the write-back is at rest (no upload
/// running, every uploader asleep until a time still to come: `WriteBack.waitsForTime`), and
/// then straight to the earliest time anyone waits for on it (an uploader's wake, a retry's
/// backoff, the batch linger, an fsync's or a drain's deadline). Nothing can happen in
/// between, so a pause of a second, a settle delay or a minute of backoff in a drain costs
/// no real time, and a drain gives up only when its deadline comes with uploads still
/// waiting on time (as in the daemon), never because the machine was slow.
///
/// Real time is spent only waiting for the write-back to come to rest, in steps of 0.2 ms; if
/// it does not within `stallLimit` (a hang, or a thread that no longer waits on the clock), the
/// run fails with that finding instead of waiting forever.
final class ModelClock: Sendable {
    let clock = ManualClock()
    /// Real seconds the write-back may take to come to rest.
    static let stallLimit: Double = 30
    /// Waits further ahead than this are waits for a signal only (`.distantFuture`).
    private static let horizon: Double = 1e7

    /// Waits in real time until the write-back of `fs` is at rest; false after `stallLimit`.
    func rest(_ fs: FileSystem) -> Bool {
        guard let writeBack = fs.writeBack else { return true }
        let deadline = Date().addingTimeInterval(Self.stallLimit)
        while !writeBack.waitsForTime() {
            if Date() > deadline { return false }
            usleep(200)
        }
        return true
    }

    /// The earliest wake-up still to come on the clock, unless it is only a wait for a signal.
    private var nextEvent: Date? {
        guard let next = clock.earliestDeadline, next.timeIntervalSince(clock.now) < Self.horizon else { return nil }
        return next
    }

    /// A pause of `seconds`: time runs forward event by event to `seconds` from now, letting
    /// the write-back do at each step what falls due then.
    func pass(_ seconds: Double, _ fs: FileSystem) throws {
        let target = clock.now.addingTimeInterval(seconds)
        while true {
            guard rest(fs) else { throw Self.stalled("a pause") }
            guard let next = nextEvent, next < target else { break }
            clock.advance(to: next)
        }
        clock.advance(to: target)
        guard rest(fs) else { throw Self.stalled("a pause") }
    }

    /// Runs `body`, which waits on the clock (a drain, an fsync), while another thread runs
    /// time forward event by event until it returns.
    func running<T>(_ fs: FileSystem, _ what: String, _ body: () throws -> T) throws -> T {
        let done = Atomic<Bool>(false)
        let stalled = Atomic<Bool>(false)
        let stopped = DispatchSemaphore(value: 0)
        let ticker = Thread { [self] in
            while !done.load(ordering: .acquiring) {
                guard rest(fs) else {
                    // Let the body's own deadline pass, so that it returns and the run can say why.
                    stalled.store(true, ordering: .releasing)
                    clock.advance(by: Self.horizon)
                    break
                }
                if let next = nextEvent { clock.advance(to: next) } else { usleep(200) }
            }
            stopped.signal()
        }
        ticker.start()
        defer {
            done.store(true, ordering: .releasing)
            stopped.wait()
        }
        let result = try body()
        if stalled.load(ordering: .acquiring) { throw Self.stalled(what) }
        return result
    }

    private static func stalled(_ what: String) -> ModelFailure {
        ModelFailure(description: "the write-back did not come to rest within \(Int(stallLimit)) s of real time during \(what)")
    }
}
