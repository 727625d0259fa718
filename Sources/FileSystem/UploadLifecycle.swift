import Foundation

/// When a staged file may be uploaded, as a value: who writes it, whether a namespace operation
/// holds it, whether an upload runs or an fsync waits, when it is due, and how its attempts
/// went. The events of its life are the mutating methods; each returns what the caller must do
/// about it (`Effects`), so the rules live here, testable without threads, and the caller only
/// carries them out: `StagedFile` keeps one under its lock, and `WriteBack.apply` acts on the
/// effects under `condition` once that lock is released.
///
/// Whether the server lacks the recorded content (`StagedFile.needsUpload`: the journal's
/// generations, an unlink) is the journal's side of the file and stays in `StagedFile`;
/// `readiness(needsUpload:)` combines the two.
struct UploadLifecycle {
    /// What the caller must do after an event.
    struct Effects: OptionSet {
        let rawValue: Int
        /// The file's readiness may have changed: announce it to the schedule again.
        static let reschedule = Effects(rawValue: 1)
        /// Threads waiting on `condition` for this file (an fsync, a rename holding it until
        /// its upload ends) must look again.
        static let wakeWaiters = Effects(rawValue: 2)
    }

    /// Open handles that may write.
    private(set) var writers = 0
    /// Namespace operations in progress on it: no upload may start (`WriteBack.holdingUploads`).
    private(set) var held = 0
    private(set) var uploading = false
    /// fsyncs waiting for the upload: upload even while writers have it open. Each counts from
    /// its start to its end, across failed attempts and their retries, so a file still open for
    /// writing stays due (at its retry's time) as long as an fsync waits for it.
    private(set) var fsyncWaiters = 0
    var fsyncRequested: Bool { fsyncWaiters > 0 }
    /// Not before this time (the settle delay after close, or a retry's backoff).
    private(set) var notBefore = Date.distantFuture
    /// Attempts since the last success (the backoff grows with them).
    private(set) var attempts = 0
    /// The last upload failure, and whether retrying cannot help without a change here.
    private(set) var failure: FSError?
    private(set) var failedPermanently = false

    /// When an uploader may take the file, or nil while none may.
    func readiness(needsUpload: Bool) -> Date? {
        guard needsUpload && !uploading && held == 0 && (writers == 0 || fsyncRequested) && !failedPermanently else { return nil }
        return notBefore
    }

    // MARK: Events

    /// A handle that may write was opened (or the file was made for one): nothing is uploaded
    /// while it writes, but for an fsync.
    mutating func openedForWriting() -> Effects {
        writers += 1
        notBefore = .distantFuture
        return .reschedule
    }

    /// A writer closed: the last one starts the settle delay.
    mutating func writerClosed(at now: Date, settle: Double) -> Effects {
        writers = max(0, writers - 1)
        guard writers == 0 else { return [] }
        notBefore = now.addingTimeInterval(settle)
        return .reschedule
    }

    /// The mount ended with writers that will never close: none is left. `due`: its last closed
    /// version is uploaded now.
    mutating func writersAbandoned(at now: Date, due: Bool) -> Effects {
        writers = 0
        if due { notBefore = now }
        return .reschedule
    }

    /// A namespace operation (unlink, rename) holds it, or lets it go.
    mutating func hold() -> Effects {
        held += 1
        return .reschedule
    }

    mutating func unhold() -> Effects {
        held = max(0, held - 1)
        return .reschedule
    }

    /// Found pending in the journal at start: due now.
    mutating func resumed(at now: Date) -> Effects {
        notBefore = now
        return .reschedule
    }

    /// An fsync waits for the upload: due now, writers or not.
    mutating func fsyncWaits(at now: Date) -> Effects {
        fsyncWaiters += 1
        notBefore = now
        return .reschedule
    }

    /// That fsync returned (the upload done, failed for good, or its timeout): with no other
    /// fsync waiting, a file still open for writing is no longer due.
    mutating func fsyncEnds() -> Effects {
        fsyncWaiters = max(0, fsyncWaiters - 1)
        return .reschedule
    }

    /// The content or the name changed: a refusal of the old one says nothing about the new.
    mutating func changed() -> Effects {
        guard failedPermanently else { return [] }
        failedPermanently = false
        return .reschedule
    }

    /// The unmount's drain: what waits out a settle delay or a backoff is due now.
    mutating func drainStarts(at now: Date) -> Effects {
        guard notBefore > now && writers == 0 else { return [] }
        notBefore = now
        return .reschedule
    }

    /// An uploader took it (the schedule gave it out). A waiting fsync's request stays: should
    /// this attempt fail, the retry is still due for it.
    mutating func taken() {
        uploading = true
    }

    /// An attempt of the taken upload begins; its number.
    mutating func attemptBegins() -> Int {
        attempts += 1
        return attempts
    }

    /// Given back untried (a bulk request the server stopped before it): due again now, the
    /// attempt not counted.
    mutating func givenBack(at now: Date) -> Effects {
        uploading = false
        attempts = max(0, attempts - 1)
        notBefore = now
        return [.reschedule, .wakeWaiters]
    }

    /// The upload ended with the server holding the content.
    mutating func succeeded() -> Effects {
        uploading = false
        failure = nil
        attempts = 0
        return [.reschedule, .wakeWaiters]
    }

    /// The upload failed: retried at `retryAt`, or (`permanent`) kept until the file changes.
    mutating func failed(_ error: FSError, permanent: Bool, retryAt: Date) -> Effects {
        uploading = false
        failure = error
        failedPermanently = permanent
        notBefore = retryAt
        return [.reschedule, .wakeWaiters]
    }

    /// The upload ended and its outcome no longer matters (the file was unlinked meanwhile).
    mutating func ended() -> Effects {
        uploading = false
        return [.reschedule, .wakeWaiters]
    }
}
