@testable import FileSystem
import Foundation
import Synchronization
import TestSupport
import Testing

/// The upload schedule on its own, driven by a manual clock: which file an uploader takes and
/// when, how long it sleeps, and when an announcement must wake it.
@Suite("Upload schedule (manual clock)")
struct UploadScheduleTests {
    let clock = ManualClock()
    /// The clock's time when the test began.
    let t0: Date

    init() { t0 = clock.now }

    func schedule(_ change: (inout UploadSchedule.Limits) -> Void = { _ in }) -> UploadSchedule {
        var limits = UploadSchedule.Limits()
        change(&limits)
        return UploadSchedule(limits: limits, clock: clock)
    }

    static func file(_ path: String, size: Int64 = 1000) -> StagedFile {
        StagedFile(path: path, stagingPath: "/nonexistent/\(path)", size: size, mtime: 0, base: .new, fileID: 0)
    }

    func ready(_ file: StagedFile, in seconds: Double, urgent: Bool = false) -> UploadSchedule.Readiness {
        .init(at: t0.addingTimeInterval(seconds), size: file.size, path: file.path, urgent: urgent)
    }

    /// The files taken, as paths; nil for a sleep.
    static func taken(_ decision: UploadSchedule.Decision) -> [String]? {
        if case .take(let files) = decision { files.map(\.path) } else { nil }
    }

    static func sleep(_ decision: UploadSchedule.Decision) -> Date? {
        if case .sleep(let until) = decision { until } else { nil }
    }

    @Test("files are taken in the order they fall due, not the order announced; an uploader sleeps until the next due time")
    func dueOrder() {
        var schedule = schedule()
        let (a, b, c) = (Self.file("a", size: 5 << 20), Self.file("b", size: 5 << 20), Self.file("c", size: 5 << 20))
        _ = schedule.announce(a, ready(a, in: 3))
        _ = schedule.announce(b, ready(b, in: 1))
        _ = schedule.announce(c, ready(c, in: 2))
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == t0.addingTimeInterval(1))
        clock.advance(by: 1)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: true, busy: 0)) == ["b"])
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 1)) == t0.addingTimeInterval(2))
        clock.advance(by: 5)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: true, busy: 0)) == ["c"])
        #expect(Self.taken(schedule.next(uploader: 1, bulk: true, busy: 1)) == ["a"])
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == .distantFuture)
        #expect(schedule.scheduledCount == 0)
    }

    @Test("a file that stops being ready (opened for writing, held, unlinked) is never taken; one announced again keeps only its new time")
    func lazyInvalidation() {
        var schedule = schedule()
        let (a, b, c) = (Self.file("a", size: 5 << 20), Self.file("b", size: 5 << 20), Self.file("c", size: 5 << 20))
        _ = schedule.announce(a, ready(a, in: 1))
        _ = schedule.announce(b, ready(b, in: 2))
        _ = schedule.announce(c, ready(c, in: 0.5))
        _ = schedule.announce(a, nil)  // e.g. opened for writing again
        _ = schedule.announce(c, ready(c, in: 10))  // e.g. a retry's backoff
        // The stale entries of a (at 1 s) and c (at 0.5 s) are dropped on the way: the next wake
        // is b's.
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == t0.addingTimeInterval(2))
        clock.advance(by: 3)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: true, busy: 0)) == ["b"])
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == t0.addingTimeInterval(10))
        // Fallen due, then not ready before an uploader came: not taken.
        clock.advance(by: 8)
        _ = schedule.announce(c, nil)
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == .distantFuture)
        #expect(schedule.scheduledCount == 0)
    }

    @Test("an announcement wakes the sleeping uploaders only when none of them would look in time")
    func wakeRule() {
        var schedule = schedule()
        let (a, b, c) = (Self.file("a"), Self.file("b"), Self.file("c"))
        // No uploader sleeps (all busy): they look again when their uploads end.
        var wake = schedule.announce(a, ready(a, in: 10))
        #expect(!wake)
        _ = schedule.next(uploader: 0, bulk: false, busy: 0)  // sleeps until a's 10 s
        #expect(schedule.allSleep(uploaders: 1, after: clock.now))
        wake = schedule.announce(b, ready(b, in: 5))
        #expect(wake, "due before the sleeper wakes")
        // Woken, and not asleep again yet: a test driving the clock must not move it now, and
        // a further announcement need not wake anyone (it is seen at the look).
        #expect(!schedule.allSleep(uploaders: 1, after: clock.now))
        wake = schedule.announce(c, ready(c, in: 4))
        #expect(!wake, "woken already")
        _ = schedule.announce(c, nil)
        _ = schedule.next(uploader: 0, bulk: false, busy: 0)  // now sleeps until 5 s
        #expect(schedule.allSleep(uploaders: 1, after: clock.now))
        wake = schedule.announce(c, ready(c, in: 7))
        #expect(!wake, "the sleeper looks at 5 s anyway")
        wake = schedule.announce(c, nil)
        #expect(!wake, "no longer ready: nothing to wake for")
        // A taking uploader is not a sleeper any more.
        clock.advance(by: 5)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: false, busy: 0)) == ["b"])
        wake = schedule.announce(c, ready(c, in: 6))
        #expect(!wake)
    }

    @Test("bulk: a due small file waits for small files falling due within the linger, at most the linger past its own due time")
    func linger() {
        // One uploader: nothing to share with others.
        var schedule = schedule { $0.batchLinger = 1; $0.uploaders = 1 }
        let (a, b, c) = (Self.file("a"), Self.file("b"), Self.file("c"))
        _ = schedule.announce(a, ready(a, in: 0))
        _ = schedule.announce(b, ready(b, in: 0.5))
        _ = schedule.announce(c, ready(c, in: 1.5))
        // a is due, b follows within the linger: wait for b.
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == t0.addingTimeInterval(0.5))
        clock.advance(by: 0.5)
        // c is due within the linger too, but a has waited half its linger: until 1 s, not c's 1.5 s.
        #expect(Self.sleep(schedule.next(uploader: 0, bulk: true, busy: 0)) == t0.addingTimeInterval(1))
        clock.advance(by: 0.5)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: true, busy: 0))?.sorted() == ["a", "b"])
        // Without bulk requests there is nothing to share: taken when due.
        var byPut = self.schedule()
        _ = byPut.announce(a, ready(a, in: 1))
        _ = byPut.announce(b, ready(b, in: 1.5))
        #expect(Self.taken(byPut.next(uploader: 0, bulk: false, busy: 0)) == ["a"])
    }

    @Test("no linger with an fsync waiting, with a large file due, or when nothing small follows")
    func noLinger() {
        let (a, b) = (Self.file("a"), Self.file("b"))
        var urgent = schedule()
        _ = urgent.announce(a, ready(a, in: 0, urgent: true))
        _ = urgent.announce(b, ready(b, in: 0.5))
        #expect(Self.taken(urgent.next(uploader: 0, bulk: true, busy: 0)) == ["a"])

        let big = Self.file("big", size: 5 << 20)
        var large = schedule()
        _ = large.announce(big, ready(big, in: 0))
        _ = large.announce(b, ready(b, in: 0.5))
        #expect(Self.taken(large.next(uploader: 0, bulk: true, busy: 0)) == ["big"])

        var alone = schedule()
        _ = alone.announce(a, ready(a, in: 0))
        _ = alone.announce(b, ready(b, in: 1.5))  // beyond the linger
        #expect(Self.taken(alone.next(uploader: 0, bulk: true, busy: 0)) == ["a"])
    }

    @Test("due small files are shared among the idle uploaders, by path, within the request's byte limit")
    func sharing() {
        var schedule = schedule { $0.uploaders = 4; $0.bulkBytes = 2500 }
        let files = (0..<8).map { Self.file("f\($0)") }
        for (i, file) in files.enumerated().reversed() { _ = schedule.announce(file, ready(file, in: -Double(i))) }
        // f7 waited longest; 8 due and 4 idle: two each. Then by path from f0.
        #expect(Self.taken(schedule.next(uploader: 0, bulk: true, busy: 0)) == ["f7", "f0"])
        // 6 left, 3 idle: two each.
        #expect(Self.taken(schedule.next(uploader: 1, bulk: true, busy: 1)) == ["f6", "f1"])
        // 4 left, one idle: all, but 2,500 bytes hold two 1,000-byte files.
        #expect(Self.taken(schedule.next(uploader: 2, bulk: true, busy: 3)) == ["f5", "f2"])
        #expect(schedule.scheduledCount == 2)
    }

    @Test("a file announced again and again leaves a bounded number of stale entries")
    func compaction() {
        var schedule = schedule()
        let a = Self.file("a")
        for i in 0..<10_000 { _ = schedule.announce(a, ready(a, in: 300 + Double(i))) }
        #expect(schedule.scheduledCount == 1)
        #expect(schedule.storedEntries <= 2 * 1 + 64 + 1)
        clock.advance(by: 300 + 9_999)
        #expect(Self.taken(schedule.next(uploader: 0, bulk: false, busy: 0)) == ["a"])
    }

    @Test("the heap gives its elements back in order")
    func heapOrder() {
        var generator = SystemRandomNumberGenerator()
        let values = (0..<500).map { _ in Int.random(in: -1000...1000, using: &generator) }
        var heap = MinHeap(values)
        var out: [Int] = []
        while let least = heap.removeMin() { out.append(least) }
        #expect(out == values.sorted())
    }

    @Test("a manual clock's wait ends when the clock passes its deadline (false), or at a signal before it (true)")
    func manualClockWait() {
        let condition = NSCondition()
        let clock = self.clock
        /// Waits on another thread until `deadline`, poking it with `poke` every 10 ms (a poke
        /// before the wait began is lost) until it ends, at most 5 s; its result.
        func wait(until deadline: Date, poke: () -> Void) -> Bool? {
            let result = Mutex<Bool?>(nil)
            let thread = Thread {
                condition.lock()
                let signalled = clock.wait(condition, until: deadline)
                condition.unlock()
                result.withLock { $0 = signalled }
            }
            thread.start()
            for _ in 0..<500 where result.withLock({ $0 }) == nil {
                poke()
                usleep(10_000)
            }
            return result.withLock { $0 }
        }
        let deadline = t0.addingTimeInterval(60)
        #expect(wait(until: deadline) { condition.lock(); condition.signal(); condition.unlock() } == true)
        #expect(clock.now == t0, "a signal does not move the clock")
        #expect(wait(until: deadline) { clock.advance(by: 61) } == false)
        #expect(clock.now >= deadline)
    }
}
