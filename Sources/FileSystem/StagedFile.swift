import Foundation
import RemoteCache

/// A file whose current content is local: open for writing, or written and waiting for its
/// upload. The staging file holds every byte; the journal row (once closed) makes it survive
/// a crash.
final class StagedFile: @unchecked Sendable {
    // @unchecked: every `var` is guarded by `lock`, a leaf lock (taken after WriteBack's and
    // Overlay's locks, never before them).

    /// What the upload may replace on the server.
    enum Base: Equatable, Sendable {
        /// The name was free when the file was created here: create only (`If-None-Match: *`).
        case new
        /// The server's version this content was based on (`If-Match`).
        case etag(String)
        /// A server that gives no ETags: overwrite.
        case unconditional

        /// The journal's encoding: NULL, the ETag, or "" for unconditional.
        var journalValue: String? {
            switch self {
            case .new: nil
            case .etag(let tag): tag
            case .unconditional: ""
            }
        }

        init(journalValue: String?) {
            switch journalValue {
            case nil: self = .new
            case ""?: self = .unconditional
            case let tag?: self = .etag(tag)
            }
        }
    }

    let lock = NSLock()
    /// Held across a journal write that depends on the file's base ETag or staging file: a
    /// close's record (reads both, then upserts the row) and an upload's completion (moves the
    /// base on, then completes the row); a copy on write holds it to switch the staging file.
    /// Without it a completion could fall between a close's read and its upsert, and the row the
    /// close inserts would name the base the upload replaced: after a restart, that row's upload
    /// would meet 412 and make a conflict copy of our own file. Taken after `WriteBack.names`,
    /// before `WriteBack.condition` and `lock` (the order is written out in `WriteBack`).
    let journalLock = NSLock()
    var path: String
    var stagingPath: String
    var size: Int64
    var mtime: Int64
    var base: Base
    var fileID: Int64
    /// Changed since the journal last recorded it.
    var dirty = false
    /// Of those changes, some were to the bytes (or the staging file was replaced), not only
    /// to the mtime: recording them means making the bytes durable again.
    var contentChanged = false
    var journalID: Int64?
    /// The journal's generation of the recorded content; `uploadedGeneration` the last one
    /// the server has.
    var generation: Int64 = 0
    var uploadedGeneration: Int64 = 0
    /// Writers, holds, the running upload, a waiting fsync, the due time and the attempts:
    /// when the file may be uploaded (its events return what `WriteBack.apply` carries out).
    var upload = UploadLifecycle()
    /// Unlinked while its upload ran: the uploaded copy is deleted when the upload ends.
    var removed = false
    var chunkUploadID: String?
    /// What an attempt sent: its path, size and mtime.
    struct SentVersion: Equatable {
        var path: String
        var size: Int64
        var mtime: Int64
    }

    /// Attempts whose answer never came, or did but could not be checked (a reset, a timeout,
    /// a 503 from whatever stands in front of the server), oldest first, at most
    /// `unansweredLimit`. The server may have stored any of them: a later attempt's failure
    /// says nothing about an earlier one's bytes (a lost answer, a rewrite, then a 503 leaves the
    /// first version stored). If a later attempt meets a changed version at its path with
    /// exactly the size and mtime of one of these, that version is ours, not another client's.
    var unanswered: [SentVersion] = []
    static let unansweredLimit = 8

    /// Notes an attempt that may have been stored (caller holds `lock`).
    func noteUnanswered(_ sent: SentVersion) {
        unanswered.removeAll { $0 == sent }
        unanswered.append(sent)
        if unanswered.count > Self.unansweredLimit { unanswered.removeFirst() }
    }
    /// A bulk request refused this content (or stopped at it): it goes by PUT, which gets
    /// the precise error. Cleared when the content changes.
    var bulkRefused = false

    init(path: String, stagingPath: String, size: Int64, mtime: Int64, base: Base, fileID: Int64) {
        self.path = path
        self.stagingPath = stagingPath
        self.size = size
        self.mtime = mtime
        self.base = base
        self.fileID = fileID
    }

    /// The file as listings show it: local size and mtime.
    func entry(name: String) -> RemoteEntry {
        lock.lock(); defer { lock.unlock() }
        let etag: String = if case .etag(let tag) = base { tag } else { "" }
        return RemoteEntry(name: name, isDirectory: false, size: size, mtime: mtime, etag: etag, fileID: fileID,
                           permissions: Permissions(rawValue: 0))
    }

    /// Whether the server lacks the recorded content (caller holds `lock`).
    var needsUpload: Bool { journalID != nil && generation > uploadedGeneration && !removed }

    /// When an uploader may take the file, or nil while none may (caller holds `lock`). Every
    /// change to what this reads is announced to the schedule (`WriteBack.reschedule`), but for
    /// a write's size and the permanent failure a write clears: those change only while a
    /// writer has the file open, and that writer's close announces it.
    var readiness: UploadSchedule.Readiness? {
        upload.readiness(needsUpload: needsUpload).map { .init(at: $0, size: size, path: path, urgent: upload.fsyncRequested) }
    }
}
