import Foundation
import Synchronization

/// What ends the server exchanges of one caller early: a cancel (the FUSE request's caller
/// was interrupted by a signal) or a deadline (the longest a request to the mount may wait
/// for the server).
///
/// It travels with the thread, not through every call in between: `run` makes it the calling
/// thread's current one, and `HTTPClient.perform` on that thread looks it up. A transfer then
/// ends within about a second of a cancel (libcurl's progress callback, which runs at least
/// once a second, aborts it), and no retry or backoff sleep starts after one. The deadline
/// bounds every exchange except transfers of file content to or from a local file (a whole
/// file downloaded for writing, an upload): those may legitimately take longer, and only
/// their stall detector and a cancel end them.
public final class Cancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)
    /// When the bounded exchanges must have ended; nil: no deadline.
    public let deadline: ContinuousClock.Instant?

    public init(deadline: ContinuousClock.Instant? = nil) {
        self.deadline = deadline
    }

    /// A deadline `timeout` from now.
    public convenience init(timeout: Duration) {
        self.init(deadline: .now + timeout)
    }

    /// Ends the transfers running under it (from any thread, also a C callback's).
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    /// Whether the deadline has passed.
    public var isOverdue: Bool { deadline.map { ContinuousClock.now >= $0 } ?? false }

    /// Runs `body` with this as the calling thread's current cancellation.
    public func run<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let previous = pthread_getspecific(cancellationKey)
        pthread_setspecific(cancellationKey, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(cancellationKey, previous) }
        return try body()
    }

    /// The calling thread's current cancellation (inside `run`), if any.
    public static var current: Cancellation? {
        pthread_getspecific(cancellationKey).map { Unmanaged<Cancellation>.fromOpaque($0).takeUnretainedValue() }
    }
}

/// The thread-specific slot of `Cancellation.current` (no destructor: `run` clears it).
private let cancellationKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()
