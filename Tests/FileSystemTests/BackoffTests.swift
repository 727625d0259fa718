import FileSystem
import Foundation
import Testing

/// The one backoff policy of the background retries (write-back, ingest, attribute sync).
@Suite("Backoff")
struct BackoffTests {
    /// SplitMix64: a seeded generator, so that a jittered run replays.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

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
        var generator = Seeded(state: 7)
        let third = (0..<500).map { _ in backoff.delay(afterFailures: 3, using: &generator) }
        #expect(third.allSatisfy { (6...10).contains($0) }, "8 s ± 25 %")
        #expect(third.min()! < 6.5 && third.max()! > 9.5, "the whole range is used")
        var again = Seeded(state: 7)
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
