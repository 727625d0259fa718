import Foundation
@testable import Ingest
import Testing

/// `IngestBatch.compute`, what `ncfs status --watch` shows, with a driven clock: the batch in
/// progress (not earlier failures), totals that stay put while files are taken, a rate over
/// the recent past, and no ETA before there is a rate.
@Suite("ncfs status --watch: the batch in progress")
struct StatusWatchTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// A small model of the pipeline: items with their times, changed as the clock moves.
    struct Timeline {
        var items: [IngestTimes] = []
        var nextID: Int64 = 1

        @discardableResult
        mutating func add(at time: Double, size: Int64 = 1_000_000) -> Int64 {
            let id = nextID
            nextID += 1
            items.append(IngestTimes(id: id, state: .pending, size: size, attempts: 0, createdAt: at(time), nextAttemptAt: at(time),
                                     updatedAt: at(time), finishedAt: nil))
            return id
        }

        mutating func set(_ id: Int64, _ state: IngestItem.State, at time: Double) {
            guard let index = items.firstIndex(where: { $0.id == id }) else { return }
            items[index].state = state
            items[index].updatedAt = at(time)
            if !state.isActive { items[index].finishedAt = at(time) }
        }

        /// `ncfs backfill`: back to pending, attempts reset, next attempt now.
        mutating func reschedule(_ id: Int64, at time: Double) {
            guard let index = items.firstIndex(where: { $0.id == id }) else { return }
            items[index].state = .pending
            items[index].attempts = 0
            items[index].nextAttemptAt = at(time)
            items[index].updatedAt = at(time)
        }
    }

    @Test("Five files dropped while an old failure sits in the catalog: the batch counts 5 throughout (waiting files included, never more as they are taken), the old failure is not part of it")
    func fiveFilesAfterAnOldFailure() {
        var timeline = Timeline()
        let old = timeline.add(at: -600)
        timeline.set(old, .failed, at: -590)
        let earlier = timeline.add(at: -300)
        timeline.set(earlier, .succeeded, at: -295)

        // t=0: five files copied in, none taken yet.
        var batch = IngestBatch.compute(timeline.items, waiting: 5, waitingBytes: 5_000_000, now: Self.at(0))
        #expect(batch.inProgress && batch.total == 5 && batch.finished == 0 && batch.waiting == 5)
        #expect(batch.failed == 0, "an earlier failure is mixed into the batch")
        #expect(batch.rate == nil && batch.eta == nil, "an ETA without any rate")
        #expect(batch.remainingBytes == 5_000_000)

        // t=2: taken (2 s quiet): five items, nothing waiting; still 0/5.
        let ids = (0..<5).map { _ in timeline.add(at: 2) }
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(2))
        #expect(batch.total == 5 && batch.finished == 0 && batch.pending == 5)
        #expect(batch.start == Self.at(2))

        // t=3: two uploading; t=4: one done.
        timeline.set(ids[0], .uploading, at: 3)
        timeline.set(ids[1], .uploading, at: 3)
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(3))
        #expect(batch.total == 5 && batch.uploading == 2 && batch.eta == nil)
        timeline.set(ids[0], .succeeded, at: 4)
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(4))
        #expect(batch.total == 5 && batch.finished == 1)
        // One item (1 MB) in the 2 s since the batch began: 0.5 items/s, 500 kB/s; 4 items and
        // 4 MB left: 8 s either way.
        #expect(batch.itemRate == 0.5 && batch.rate == 500_000)
        #expect(batch.eta == 8)

        // One fails, the rest succeed: 5/5, 1 failed, finished.
        timeline.set(ids[1], .failed, at: 5)
        for id in ids.dropFirst(2) { timeline.set(id, .succeeded, at: 6) }
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(6))
        #expect(!batch.inProgress && batch.total == 5 && batch.finished == 5 && batch.failed == 1 && batch.succeeded == 4)
        #expect(batch.start == Self.at(2) && batch.end == Self.at(6))
        #expect(batch.rate == nil && batch.eta == nil)
    }

    @Test("The rate is over the last 60 s only: a fast start then a stall lowers it, and the ETA follows; none at all while nothing finished in the window")
    func recentRate() {
        var timeline = Timeline()
        let ids = (0..<20).map { _ in timeline.add(at: 0) }
        // Ten done in the first 10 s, then nothing for 100 s.
        for (n, id) in ids.prefix(10).enumerated() { timeline.set(id, .succeeded, at: Double(n + 1)) }
        var batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(10))
        #expect(batch.itemRate == 1 && batch.eta == 10)
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(40))
        #expect(batch.itemRate == 0.25, "10 items in the 40 s of the batch so far")
        #expect(batch.eta == 40)
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(110))
        #expect(batch.rate == nil && batch.eta == nil, "nothing finished in the last 60 s: no rate, no ETA")
        #expect(batch.total == 20 && batch.finished == 10 && batch.inProgress)
        // Work resumes: 6 finish within 3 s → 6 in the last 60 s.
        for (n, id) in ids.dropFirst(10).prefix(6).enumerated() { timeline.set(id, .duplicate, at: 111 + Double(n) / 2) }
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(114))
        #expect(batch.itemRate == 0.1 && batch.eta == 40)
    }

    @Test("An idle queue ends a batch: files dropped later start a new one; a short gap (the ingest delay between files of one copy) does not")
    func idleGapsSplitBatches() {
        var timeline = Timeline()
        let a = timeline.add(at: 0)
        timeline.set(a, .succeeded, at: 1)
        // 3 s later (shorter than the idle gap): the same batch.
        let b = timeline.add(at: 4)
        var batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(4.5))
        #expect(batch.total == 2 && batch.finished == 1 && batch.start == Self.at(0))
        timeline.set(b, .succeeded, at: 5)
        // 60 s of quiet, then two files waiting: a new batch of 2, not 4.
        batch = IngestBatch.compute(timeline.items, waiting: 2, waitingBytes: 10, now: Self.at(65))
        #expect(batch.inProgress && batch.total == 2 && batch.finished == 0 && batch.waiting == 2)
        // Nothing in progress: the last batch is described, finished.
        batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(65))
        #expect(!batch.inProgress && batch.total == 2 && batch.finished == 2 && batch.waiting == 0)
        #expect(IngestBatch.compute([], waiting: 0, waitingBytes: 0, now: Self.at(0)) == IngestBatch())
    }

    @Test("A failed item put back by backfill joins the batch of the moment it was rescheduled, not the one of its creation")
    func rescheduledItem() {
        var timeline = Timeline()
        let old = timeline.add(at: -3600)
        timeline.set(old, .failed, at: -3590)
        for t in stride(from: -3000.0, to: -100, by: 100) {
            let id = timeline.add(at: t)
            timeline.set(id, .succeeded, at: t + 1)
        }
        timeline.reschedule(old, at: 0)
        let fresh = timeline.add(at: 1)
        let batch = IngestBatch.compute(timeline.items, waiting: 0, waitingBytes: 0, now: Self.at(2))
        #expect(batch.total == 2 && batch.pending == 2 && batch.start == Self.at(0), "\(batch)")
        _ = fresh
    }
}
