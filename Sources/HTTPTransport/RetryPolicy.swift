import Foundation

/// When and how long to wait before sending a request again.
///
/// Backoff is "full jitter": attempt n waits a random time in [0, min(maxDelay, base·2ⁿ)], so
/// many clients that failed together do not come back together. A `Retry-After` header from
/// the server wins (capped by `maxRetryAfter`). The whole exchange also has a wall-clock
/// `budget`, after which the last failure is returned: a read that cannot succeed must turn
/// into EIO promptly rather than hang.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    public var maxRetryAfter: Duration
    public var budget: Duration
    /// Statuses that mean "not applied, try later". 401 is deliberately absent: retrying bad
    /// credentials feeds Nextcloud's brute-force throttle, which then slows every request.
    public var retryStatuses: Set<Int>

    public init(
        maxAttempts: Int = 5,
        baseDelay: Duration = .milliseconds(200),
        maxDelay: Duration = .seconds(8),
        maxRetryAfter: Duration = .seconds(60),
        budget: Duration = .seconds(120),
        retryStatuses: Set<Int> = [423, 429, 500, 502, 503, 504]
    ) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
        self.budget = budget
        self.retryStatuses = retryStatuses
    }

    /// No retries at all (probes such as `ncfs doctor` want the first answer).
    public static let noRetries = RetryPolicy(maxAttempts: 1)

    /// 423 (locked), 429 (throttled) and 503 (maintenance) say the server did not act, so they
    /// are safe to retry even for MOVE or POST. Other 5xx may have been half-applied.
    static let notAppliedStatuses: Set<Int> = [423, 429, 503]

    func shouldRetry(status: Int, idempotent: Bool) -> Bool {
        guard retryStatuses.contains(status) else { return false }
        return idempotent || RetryPolicy.notAppliedStatuses.contains(status)
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    func delay(afterAttempt attempt: Int, retryAfter: String?) -> Duration {
        if let retryAfter, let seconds = Int(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return min(.seconds(seconds), maxRetryAfter)
        }
        let cap = min(maxDelay, baseDelay * (1 << min(attempt - 1, 20)))
        let capMillis = max(1, Int(cap.components.seconds * 1000 + cap.components.attoseconds / 1_000_000_000_000_000))
        return .milliseconds(Int.random(in: 0...capMillis))
    }
}
