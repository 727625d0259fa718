import FileSystem
import Foundation
import TestSupport
import Testing

/// The one backoff policy of the background retries (write-back, ingest, attribute sync).
@Suite("Backoff")
struct BackoffTests {
    @Test("write-back's numbers: 1 s doubling, at most 5 min, nothing before a failure")
    func doubling() {
        let backoff = Backoff(base: 1, cap: 300)
        #expect((0...10).map { backoff.delay(afterFailures: $0) } == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300])
        #expect(backoff.delay(afterFailures: 1_000_000) == 300, "no overflow however many failures")
        #expect(backoff.delay(afterFailures: -1) == 0)
    }

    @Test("jitter spreads the delay within ±jitter of the exponential one, the cap included")
    func jitter() {
        let backoff = Backoff(base: 2, cap: 300, jitter: 0.25)
        var generator = SeededGenerator(seed: 7)
        let third = (0..<500).map { _ in backoff.delay(afterFailures: 3, using: &generator) }
        #expect(third.allSatisfy { (6...10).contains($0) }, "8 s ± 25 %")
        #expect(third.min()! < 6.5 && third.max()! > 9.5, "the whole range is used")
        var again = SeededGenerator(seed: 7)
        #expect(backoff.delay(afterFailures: 3, using: &again) == third[0], "the same generator, the same delay")
        let drawn = (0..<200).map { _ in backoff.delay(afterFailures: 20) }
        #expect(drawn.allSatisfy { (225...375).contains($0) })
        #expect(Set(drawn).count > 100, "spread, not one value")
    }

    @Test("numbers out of range are brought into it")
    func clamped() {
        let backoff = Backoff(base: 10, cap: 5, jitter: 3)
        #expect(backoff.cap == 10)
        #expect(backoff.jitter < 1)
        #expect(Backoff(base: -1, cap: 4).delay(afterFailures: 5) == 0)
    }
}
