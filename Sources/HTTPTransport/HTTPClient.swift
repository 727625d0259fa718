import Foundation
import Logging
import Synchronization

/// A thread-safe HTTP client over libcurl.
///
/// Calls are blocking and run on the caller's thread: the FUSE layer calls from its own worker
/// threads, and async callers go through `send(_:)`, which hops to a dedicated dispatch queue
/// so the Swift concurrency pool is never blocked on the network.
///
/// Connection reuse: every request borrows an easy handle from an idle pool and returns it
/// afterwards. A libcurl easy handle keeps its kept-alive connections across requests, so a
/// request that finds an idle handle also finds an open connection to the server.
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    let logger: Logger

    /// Idle easy handles, most recently used last (LIFO keeps the warmest connection in use).
    /// `CurlEasy` is not Sendable; the mutex is what makes handing handles between threads safe,
    /// and a handle is only ever touched by the thread that popped it.
    private let idle: Mutex<[UnsafeEasy]>
    private let shutDown = Atomic<Bool>(false)

    private static let asyncQueue = DispatchQueue(label: "ncfs.http", attributes: .concurrent)

    public init(configuration: HTTPClientConfiguration, logger: Logger = Logger(label: "ncfs.http")) {
        self.configuration = configuration
        self.logger = logger
        self.idle = Mutex([])
    }

    /// Refuses new requests (in-flight ones finish); used at unmount.
    public func shutdown() { shutDown.store(true, ordering: .relaxed) }

    /// Sends `request`, retrying per the configured policy, and returns the final response,
    /// whatever its status. Throws `HTTPError` when no HTTP answer could be had.
    public func perform(
        _ request: HTTPRequest,
        sink: ResponseSink = .memory(limit: ResponseSink.defaultMemoryLimit),
        retry: RetryPolicy? = nil,
        progress: ((Int64, Int64) -> Void)? = nil
    ) throws -> HTTPResponse {
        guard !shutDown.load(ordering: .relaxed) else { throw HTTPError.cancelled }
        let policy = retry ?? configuration.retry
        let started = ContinuousClock.now
        // The calling thread's cancellation (a FUSE request's): a cancel ends the exchange, and
        // its deadline bounds it unless it moves file content (see `Cancellation`).
        let cancellation = Cancellation.current
        let deadline: ContinuousClock.Instant? = {
            if case .file = sink { return nil }
            if case .file = request.body { return nil }
            return cancellation?.deadline
        }()
        var limits = CurlEasy.Limits()
        if let cancellation {
            limits.abort = { cancellation.isCancelled }
        }
        var attempt = 0
        while true {
            attempt += 1
            if cancellation?.isCancelled == true { throw HTTPError.cancelled }
            if let deadline {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw HTTPError.timedOut(message: "no answer within the request's time limit") }
                limits.timeout = left
            }
            let easy = checkout()
            // A throw here is a stream sink's own error: the caller decides what it means.
            let outcome = try easy.value.perform(request, configuration: configuration, sink: sink, progress: progress, limits: limits)
            let elapsed = ContinuousClock.now - started
            let canRetryAgain = attempt < policy.maxAttempts && elapsed < policy.budget && !shutDown.load(ordering: .relaxed)
                && cancellation?.isCancelled != true && deadline.map { ContinuousClock.now < $0 } ?? true

            switch outcome {
            case .answered(var response, let delivered):
                checkin(easy)
                response.attempts = attempt
                logger.debug("\(request.method) \(redactedForLog(request.url)) → \(response.status)", metadata: [
                    "attempt": "\(attempt)", "ms": "\(elapsed.milliseconds)", "bytes": "\(response.bytesReceived)",
                ])
                if canRetryAgain, !delivered, policy.shouldRetry(status: response.status, idempotent: request.idempotent) {
                    let wait = policy.delay(afterAttempt: attempt, retryAfter: response.headers["Retry-After"])
                    logger.info("\(request.method) \(redactedForLog(request.url)) answered \(response.status); retrying in \(wait.milliseconds) ms")
                    // Past the deadline, or cut short by a cancel: the answer stands.
                    if !sleep(for: wait, cancellation: cancellation, deadline: deadline) { return response }
                    continue
                }
                return response
            case .failed(let error, let delivered):
                // The handle is dropped, not pooled: it may hold a broken connection.
                let retryable = error.isRetryable && (request.idempotent || error.requestNeverSent)
                if canRetryAgain, retryable, !delivered {
                    let wait = policy.delay(afterAttempt: attempt, retryAfter: nil)
                    logger.info("\(request.method) \(redactedForLog(request.url)) failed: \(error); retrying in \(wait.milliseconds) ms")
                    if sleep(for: wait, cancellation: cancellation, deadline: deadline) { continue }
                    if cancellation?.isCancelled == true { throw HTTPError.cancelled }
                    throw error
                }
                if case .cancelled = error {
                    logger.info("\(request.method) \(redactedForLog(request.url)) cancelled after \(attempt) attempt(s)")
                    throw error
                }
                logger.warning("\(request.method) \(redactedForLog(request.url)) failed after \(attempt) attempt(s): \(error)")
                throw error
            }
        }
    }

    /// `perform` with the body in memory, off the Swift concurrency pool.
    public func send(_ request: HTTPRequest, limit: Int = ResponseSink.defaultMemoryLimit, retry: RetryPolicy? = nil) async throws -> HTTPResponse {
        try await withCheckedThrowingContinuation { continuation in
            HTTPClient.asyncQueue.async {
                continuation.resume(with: Result { try self.perform(request, sink: .memory(limit: limit), retry: retry) })
            }
        }
    }

    /// Waits `duration` before a retry, in short steps so that a cancel ends the wait. False
    /// (at once) when the wait would end past `deadline`, or once cancelled: no retry then.
    private func sleep(for duration: Duration, cancellation: Cancellation?, deadline: ContinuousClock.Instant?) -> Bool {
        let end = ContinuousClock.now + duration
        if let deadline, end >= deadline { return false }
        while true {
            if cancellation?.isCancelled == true { return false }
            let left = end - ContinuousClock.now
            if left <= .zero { return true }
            let ms = min(left.milliseconds, cancellation == nil ? 3_600_000 : 50)
            if ms > 0 { usleep(useconds_t(ms) * 1000) } else { return true }
        }
    }

    private func checkout() -> UnsafeEasy {
        idle.withLock { $0.popLast() } ?? UnsafeEasy(CurlEasy())
    }

    private func checkin(_ easy: UnsafeEasy) {
        idle.withLock { handles in
            if handles.count < configuration.maxIdleConnections { handles.append(easy) }
        }
    }
}

/// Moves a `CurlEasy` between threads through the pool. Safe because a handle is owned by
/// exactly one party at a time: the pool (under its mutex) or the one thread performing on it.
struct UnsafeEasy: @unchecked Sendable {
    let value: CurlEasy
    init(_ value: CurlEasy) { self.value = value }
}
