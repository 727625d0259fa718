@testable import FileSystem
import Foundation
import Testing
import WebDAV

/// A staged file's upload lifecycle as a value: each event's new readiness and the effects it
/// asks of the caller.
@Suite("Upload lifecycle")
struct UploadLifecycleTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let error = FSError.remote(DAVError(.unavailable, method: "PUT", path: "a", status: 503, detail: "test"))

    @Test("written and closed: due after the settle delay; a second writer keeps it back until it closes too")
    func writersAndSettle() {
        var file = UploadLifecycle()
        #expect(file.openedForWriting() == .reschedule)
        #expect(file.readiness(needsUpload: true) == nil, "written to")
        #expect(file.openedForWriting() == .reschedule)
        #expect(file.writerClosed(at: now, settle: 1) == [], "one writer left: nothing changes")
        #expect(file.readiness(needsUpload: true) == nil)
        #expect(file.writerClosed(at: now, settle: 1) == .reschedule)
        #expect(file.readiness(needsUpload: true) == now.addingTimeInterval(1))
        #expect(file.readiness(needsUpload: false) == nil, "the server has it already")
        // Reopened before it went up: back to not ready, its due time gone.
        _ = file.openedForWriting()
        #expect(file.readiness(needsUpload: true) == nil)
        #expect(file.notBefore == .distantFuture)
    }

    @Test("held by a rename or unlink: not ready until released, then due as before")
    func held() {
        var file = UploadLifecycle()
        _ = file.openedForWriting()
        _ = file.writerClosed(at: now, settle: 1)
        #expect(file.hold() == .reschedule)
        #expect(file.hold() == .reschedule)
        _ = file.unhold()
        #expect(file.readiness(needsUpload: true) == nil, "still held once")
        #expect(file.unhold() == .reschedule)
        #expect(file.readiness(needsUpload: true) == now.addingTimeInterval(1))
    }

    @Test("an fsync makes a file open for writing due now, and keeps it due across a failed attempt until the fsync ends")
    func fsync() {
        var file = UploadLifecycle()
        _ = file.openedForWriting()
        #expect(file.fsyncWaits(at: now) == .reschedule)
        #expect(file.readiness(needsUpload: true) == now)
        file.taken()
        #expect(file.uploading && file.fsyncRequested)
        #expect(file.readiness(needsUpload: true) == nil, "uploading")
        #expect(file.attemptBegins() == 1)
        _ = file.failed(error, permanent: false, retryAt: now.addingTimeInterval(1))
        // Open for writing, but the fsync still waits: due at the retry's time, with nothing to
        // ask (before, the attempt took the request with it and the fsync had to ask again, a
        // step a waiter slow to wake could leave undone).
        #expect(file.readiness(needsUpload: true) == now.addingTimeInterval(1))
        // Two fsyncs wait; the request lasts until both have ended.
        _ = file.fsyncWaits(at: now)
        #expect(file.fsyncEnds() == .reschedule)
        #expect(file.readiness(needsUpload: true) == now)
        _ = file.fsyncEnds()
        #expect(!file.fsyncRequested)
        #expect(file.readiness(needsUpload: true) == nil, "open for writing, no fsync waiting")
    }

    @Test("a transient failure is retried at its time and counts attempts; success resets them; a failure wakes the waiters")
    func transientFailure() {
        var file = UploadLifecycle()
        _ = file.openedForWriting()
        _ = file.writerClosed(at: now, settle: 0)
        file.taken()
        #expect(file.attemptBegins() == 1)
        #expect(file.failed(error, permanent: false, retryAt: now.addingTimeInterval(2)) == [.reschedule, .wakeWaiters])
        #expect(file.readiness(needsUpload: true) == now.addingTimeInterval(2))
        #expect(file.failure != nil && !file.failedPermanently)
        file.taken()
        #expect(file.attemptBegins() == 2)
        #expect(file.succeeded() == [.reschedule, .wakeWaiters])
        #expect(file.attempts == 0 && file.failure == nil && !file.uploading)
    }

    @Test("a permanent failure keeps the file back until it changes")
    func permanentFailure() {
        var file = UploadLifecycle()
        _ = file.writersAbandoned(at: now, due: true)
        file.taken()
        _ = file.attemptBegins()
        _ = file.failed(error, permanent: true, retryAt: now)
        #expect(file.readiness(needsUpload: true) == nil)
        #expect(file.drainStarts(at: now.addingTimeInterval(5)) == [], "already due: the drain changes nothing")
        #expect(file.changed() == .reschedule)
        #expect(file.readiness(needsUpload: true) == now)
        #expect(file.changed() == [], "nothing to clear")
    }

    @Test("given back untried: due now, the attempt not counted")
    func givenBack() {
        var file = UploadLifecycle()
        _ = file.writersAbandoned(at: now, due: true)
        file.taken()
        #expect(file.attemptBegins() == 1)
        let later = now.addingTimeInterval(3)
        #expect(file.givenBack(at: later) == [.reschedule, .wakeWaiters])
        #expect(file.attempts == 0)
        #expect(file.readiness(needsUpload: true) == later)
    }

    @Test("the drain makes a settling or backing-off file due now, not one still written")
    func drain() {
        var closed = UploadLifecycle()
        _ = closed.openedForWriting()
        _ = closed.writerClosed(at: now, settle: 30)
        #expect(closed.drainStarts(at: now) == .reschedule)
        #expect(closed.readiness(needsUpload: true) == now)
        var open = UploadLifecycle()
        _ = open.openedForWriting()
        #expect(open.drainStarts(at: now) == [])
        #expect(open.readiness(needsUpload: true) == nil)
    }
}
