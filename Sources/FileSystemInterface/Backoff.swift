/// How long to wait before trying again after failures in a row: `base` × 2^(n−1) seconds
/// after the n-th, at most `cap`, then spread by `jitter`. One policy for the background retries
/// (write-back's uploads, ingest's items, the attribute sync's re-look), each with its own
/// numbers; a single request's retries are HTTPTransport's `RetryPolicy`, below all of them.
public struct Backoff: Sendable, Equatable {
    /// Seconds after the first failure.
    public var base: Double
    /// The longest wait, however many failures.
    public var cap: Double
    /// The spread, as a fraction of the delay: 0.25 draws it from 75 % to 125 %, so that items
    /// that failed together (a server that went away) do not all come back in the same second.
    public var jitter: Double

    /// Numbers out of range are brought into it rather than refused (they may come from a
    /// configuration): a negative base is 0, a cap below the base is the base, the jitter is
    /// kept within 0 ..< 1.
    public init(base: Double, cap: Double, jitter: Double = 0) {
        self.base = Swift.max(0, base)
        self.cap = Swift.max(cap, self.base)
        self.jitter = Swift.min(Swift.max(jitter, 0), 0.99)
    }

    /// The wait after `failures` failures in a row (0 for none).
    public func delay<R: RandomNumberGenerator>(afterFailures failures: Int, using generator: inout R) -> Double {
        guard failures > 0 else { return 0 }
        // 2^62 is past any cap; the exponent is bounded so that it stays finite.
        let exponential = Swift.min(cap, base * Double(sign: .plus, exponent: Swift.min(failures, 63) - 1, significand: 1))
        guard jitter > 0 else { return exponential }
        return exponential * Double.random(in: (1 - jitter)...(1 + jitter), using: &generator)
    }

    /// The wait after `failures` failures in a row, jittered by the system's generator.
    public func delay(afterFailures failures: Int) -> Double {
        var generator = SystemRandomNumberGenerator()
        return delay(afterFailures: failures, using: &generator)
    }
}
