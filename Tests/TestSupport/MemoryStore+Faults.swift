public import WebDAV

/// Injected failures: what a test makes the next calls of some operations meet.
///
/// A fault stands either *instead of* the operation (the request never reached the server, or
/// the server refused it: nothing changed) or *after* it (`afterPerforming`, a lost answer:
/// the server did it, then the connection broke before the client heard). The second is the
/// one a real server produces on a reset or timeout after sending, and the one settling code
/// must get right: a retried PUT then meets its own earlier upload (a changed ETag, a name
/// that exists), a retried bulk request finds its files stored.
///
/// No transport sits between: a fault reaches the caller as the transport's retries would
/// finally leave it (a 503 after the retry budget, a reset of a request that is not retried).
extension MemoryStore {
    struct Fault {
        let operations: Set<Operation>
        let kind: DAVError.Kind
        let status: Int?
        var remaining: Int
        let afterPerforming: Bool

        func error(method: String, path: String) -> DAVError {
            DAVError(kind, method: method, path: path, status: status,
                     detail: afterPerforming ? "injected after the operation was performed (a lost answer)" : "injected",
                     transport: kind == .transport ? .transport(code: 56, message: "Connection reset by peer (injected)") : nil)
        }
    }

    /// The HTTP status a server sends for `kind` (nil where no answer arrives).
    static func status(of kind: DAVError.Kind) -> Int? {
        switch kind {
        case .notFound: 404
        case .unauthorized: 401
        case .forbidden: 403
        case .conflict: 409
        case .alreadyExists: 405
        case .preconditionFailed: 412
        case .locked: 423
        case .insufficientStorage: 507
        case .badRequest: 400
        case .throttled: 429
        case .unavailable: 503
        case .server: 500
        case .invalidName, .transport, .protocolViolation, .unsupported: nil
        }
    }

    /// Makes the next `count` calls through this view of any of `operations` fail with `kind`
    /// (`.transport` as a connection reset; the others with their usual status). With
    /// `afterPerforming` each such call is carried out first and its answer lost. Faults are
    /// taken in the order they were added; a call meets at most one. With `replacing`, this
    /// fault takes the place of those still pending for any of `operations`, rather than
    /// queueing after them.
    public func failNext(_ operations: Set<Operation>, with kind: DAVError.Kind, count: Int = 1, afterPerforming: Bool = false,
                         replacing: Bool = false) {
        precondition(count > 0 && !operations.isEmpty)
        shared.lock.withLock {
            if replacing { faults.removeAll { !$0.operations.isDisjoint(with: operations) } }
            faults.append(Fault(operations: operations, kind: kind, status: Self.status(of: kind), remaining: count,
                                afterPerforming: afterPerforming))
        }
    }

    /// Makes the part for `path` (as sent) of the next bulk request through this view that
    /// carries it fail alone: refused, the others stored (a part the server could not store);
    /// or, with `stopping`, not processed together with every part after it, those before it
    /// stored (a part whose MD5 did not match: Nextcloud stops there with a 400).
    public func failBulkPart(_ path: String, stopping: Bool = false) {
        shared.lock.withLock { bulkPartFaults[DAVLocation.normalize(path)] = stopping }
    }

    /// Injected failures not yet met.
    public var pendingFaults: Int { shared.lock.withLock { faults.reduce(0) { $0 + $1.remaining } + bulkPartFaults.count } }

    /// Takes the first pending fault for `operation` (caller holds the lock).
    func takeFault(_ operation: Operation) -> Fault? {
        guard let index = faults.firstIndex(where: { $0.operations.contains(operation) }) else { return nil }
        let fault = faults[index]
        faults[index].remaining -= 1
        if faults[index].remaining == 0 { faults.remove(at: index) }
        return fault
    }

    /// Where a call stands when an interceptor sees it.
    public enum CallPhase: Sendable {
        /// Not sent yet: a hook that throws here stops it (nothing is done).
        case before
        /// Carried out by the server, its answer not yet returned: a hook that throws here
        /// loses the answer.
        case performed
    }

    /// Sees every call through a view: its operation, its path as the error would name it
    /// ("bulk" for a bulk request), and its phase.
    public typealias Interceptor = @Sendable (_ operation: Operation, _ path: String, _ phase: CallPhase) throws -> Void

    /// Runs `hook` (nil: none) at every call through this view, before it and after it was
    /// carried out, outside the lock. A hook that blocks holds the caller at that point of
    /// its work, as if its process had stopped there; ingest's crash tests stop it at each
    /// of its steps this way.
    public func intercept(_ hook: Interceptor?) {
        shared.lock.withLock { interceptor = hook }
    }
}
