import Foundation
import Glibc
import HTTPTransport
import Journal
import RemoteCache
import WebDAV

/// The uploaders: threads that take due staged files, send them, and settle the outcome in the
/// journal, the overlay and the staged file (see `WriteBack` for the life of a file).
///
/// An uploader takes one large file, or a batch of small ones (`batchFileLimit`): those go in
/// one bulk request where the server offers it, else as PUTs checked by one listing per folder
/// (`WriteBack+Batch.swift`). Either way no file costs a verification request of its own.
extension WriteBack {
    /// What an upload attempt works from: the staged file's state when it was taken, so the
    /// writers may go on (copy on write) while it runs.
    struct Job {
        let file: StagedFile
        let path: String
        let stagingPath: String
        let size: Int64
        let mtime: Int64
        let base: StagedFile.Base
        let generation: Int64
        let journalID: Int64
        let attempt: Int

        var conditions: WebDAVClient.WriteConditions {
            switch base {
            case .new: .init(createOnly: true)
            case .etag(let tag): .init(ifMatch: tag)
            case .unconditional: .none
            }
        }
    }

    /// A finished attempt, waiting for `finish`.
    struct Settled {
        let job: Job
        let outcome: Result<RemoteEntry, DAVError>
        /// Where the bytes went: the file's path, or a conflict copy's.
        let uploadedPath: String
    }

    // MARK: Uploading

    func uploadLoop(_ number: Int) {
        while true {
            // Asked outside `condition`: the first time, it reads the server's capabilities.
            let bulk = settings.bulkUpload && client.bulkUploadsAvailable()
            condition.lock()
            var batch: [StagedFile] = []
            while batch.isEmpty {
                if stopping {
                    schedule.leave(uploader: number)
                    liveUploaders -= 1
                    condition.unlock()
                    return
                }
                switch schedule.next(uploader: number, bulk: bulk, busy: activeUploads) {
                case .sleep(let until):
                    _ = clock.wait(condition, until: until)
                case .take(let files):
                    batch = files.filter(take)
                }
            }
            activeUploads += 1
            condition.unlock()
            // One file alone goes by PUT: as many requests as a bulk request and its listing,
            // and its conditions need no listing.
            if batch.count == 1 {
                upload(batch[0])
            } else {
                uploadBatch(batch, bulk: bulk)
            }
            condition.lock()
            activeUploads -= 1
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Marks a file the schedule gave out as uploading (caller holds `condition`). Every change
    /// to its readiness was announced under `condition`, so it is still due; were it not (a
    /// change that failed to announce itself), it is announced again as it is, not uploaded.
    func take(_ file: StagedFile) -> Bool {
        let now = clock.now
        file.lock.lock()
        guard let readiness = file.readiness, readiness.at <= now else {
            let path = file.path
            file.lock.unlock()
            logger.error("the upload schedule was out of date for /\(path); scheduled again")
            reschedule(file)
            return false
        }
        file.upload.taken()
        file.lock.unlock()
        return true
    }

    /// Takes the file's state for an attempt, and counts the attempt.
    func job(for file: StagedFile) -> Job {
        file.lock.lock()
        let attempt = file.upload.attemptBegins()
        let job = Job(file: file, path: file.path, stagingPath: file.stagingPath, size: file.size, mtime: file.mtime,
                      base: file.base, generation: file.generation, journalID: file.journalID!, attempt: attempt)
        file.lock.unlock()
        _ = try? journal.setState(id: job.journalID, state: .uploading, error: nil)
        return job
    }

    /// One file on its own: PUT (or chunked), checked with a request of its own.
    func upload(_ file: StagedFile) {
        let settled = attempt(job(for: file), verify: true)
        finish(settled)
    }

    /// Sends the job's bytes with its conditions. Without `verify`, a PUT's stored size is left
    /// for the caller to check (by a listing); a conflict copy and a chunked upload are always
    /// checked here.
    func attempt(_ job: Job, verify: Bool) -> Settled {
        let (file, path) = (job.file, job.path)
        var conditions = job.conditions
        do {
            if let ours = try unansweredVersion(job) {
                // An earlier attempt's answer was lost, and the server has that attempt's
                // version: replace it by its ETag (the base it was sent on is stale now).
                conditions = .init(ifMatch: ours)
            }
            let entry = try send(job.stagingPath, to: path, size: job.size, mtime: job.mtime, conditions: conditions,
                                 file: file, journalID: job.journalID, verify: verify)
            return Settled(job: job, outcome: .success(entry), uploadedPath: path)
        } catch let mismatch as StoredMismatch {
            adoptStoredVersion(job, etag: mismatch.storedETag)
            return Settled(job: job, outcome: .failure(mismatch.error), uploadedPath: path)
        } catch let error as DAVError where error.kind == .preconditionFailed {
            let same: RemoteEntry?
            do {
                same = try identicalOnServer(path, stagingPath: job.stagingPath, size: job.size, mtime: job.mtime)
            } catch {
                // The comparison could not be made (a passing failure): retried later. Taken for
                // "not ours", the server's version, perhaps our own, would make a conflict copy.
                return Settled(job: job, outcome: .failure(error as? DAVError ?? DAVError(.server, method: "PROPFIND", path: path, detail: "\(error)")),
                               uploadedPath: path)
            }
            if let same {
                // The server already has exactly these bytes: an earlier attempt of this
                // upload succeeded without us hearing of it (a crash, or a lost answer).
                return Settled(job: job, outcome: .success(same), uploadedPath: path)
            }
            // The server's copy changed (or the name was taken) since this content was
            // based on it: keep both.
            let conflictPath = WriteBack.conflictName(for: path, at: clock.now)
            logger.warning("/\(path) changed on the server while a local version was pending; the local version is kept as /\(conflictPath)")
            do {
                let entry = try send(job.stagingPath, to: conflictPath, size: job.size, mtime: job.mtime, conditions: .init(createOnly: true),
                                     file: file, journalID: job.journalID, verify: true)
                return Settled(job: job, outcome: .success(entry), uploadedPath: conflictPath)
            } catch {
                return Settled(job: job, outcome: .failure(error as? DAVError ?? DAVError(.server, method: "PUT", path: conflictPath, detail: "\(error)")),
                               uploadedPath: conflictPath)
            }
        } catch {
            return Settled(job: job, outcome: .failure(error as? DAVError ?? DAVError(.server, method: "PUT", path: path, detail: "\(error)")),
                           uploadedPath: path)
        }
    }

    /// The ETag of the version at the job's path if it is what an earlier attempt sent without
    /// a checked answer (the size and mtime of one of them, and not the version the job is based
    /// on); nil when there was no such attempt, or the server shows something else. One `stat`,
    /// only after a lost answer. Without it, a file rewritten after a lost answer would meet its
    /// own earlier version as "changed on the server" and go to a conflict copy. Throws what
    /// the `stat` met but a 404: the attempt then fails for that reason and is retried, rather
    /// than go on without knowing and make a conflict copy of its own version.
    func unansweredVersion(_ job: Job) throws -> String? {
        let sent = job.file.lock.withLock { job.file.unanswered }.filter { $0.path == job.path }
        guard !sent.isEmpty, let stored = try statUnlessMissing(job.path), !stored.isCollection,
              let size = stored.contentLength ?? stored.size, let modified = stored.lastModified,
              let etag = stored.etag, !etag.isEmpty, job.base != .etag(etag) else { return nil }
        let version = StagedFile.SentVersion(path: job.path, size: size, mtime: Int64(modified.timeIntervalSince1970))
        return sent.contains(version) ? etag : nil
    }

    /// Our own attempt left a broken copy (a proxy or server that acknowledged bytes it did not
    /// store): the next attempt replaces exactly that version, by its ETag; left at the old
    /// base it would fail its precondition and go to a conflict copy, leaving the broken one
    /// under the name.
    func adoptStoredVersion(_ job: Job, etag: String?) {
        guard let etag, !etag.isEmpty else { return }
        job.file.lock.lock()
        if job.file.path == job.path { job.file.base = .etag(etag) }
        job.file.lock.unlock()
        _ = try? journal.setBaseETag(id: job.journalID, etag: etag)
    }

    /// PUT (or chunked upload) of the staging file; with `verify` (always for chunked), then a
    /// check that the server stored the size sent. Returns the server's entry for the file
    /// (without `verify`, as the PUT's answer tells it).
    func send(_ stagingPath: String, to path: String, size: Int64, mtime: Int64,
              conditions: WebDAVClient.WriteConditions, file: StagedFile, journalID: Int64, verify: Bool) throws -> RemoteEntry {
        let date = Date(timeIntervalSince1970: TimeInterval(mtime))
        let (result, chunked) = try client.sendFile(stagingPath, to: path, size: size, mtime: date, conditions: conditions,
                                                    chunkAbove: settings.chunkThreshold, chunkOptions: {
            // The upload id is kept (in the journal too) so that a retry, also after a restart,
            // resumes the chunks already on the server.
            var options = WebDAVClient.ChunkedUploadOptions()
            options.chunkSize = settings.chunkSize
            file.lock.lock()
            if let id = file.chunkUploadID { options.uploadID = id } else { file.chunkUploadID = options.uploadID }
            file.lock.unlock()
            _ = try? journal.setChunkUploadID(id: journalID, uploadID: options.uploadID)
            return options
        }, chunksAbandoned: {
            file.lock.lock(); file.chunkUploadID = nil; file.lock.unlock()
        })
        let name = MetadataCache.split(path).name
        guard verify || chunked else {
            return RemoteEntry(name: name, isDirectory: false, size: size, mtime: mtime, etag: result.etag ?? "",
                               fileID: result.fileID ?? 0, permissions: Permissions(rawValue: 0))
        }
        let stored: DAVResource
        do {
            stored = try client.stat(path)
        } catch let error as DAVError where error.kind == .notFound {
            // Not "the parent is gone": the PUT itself said it stored the file. Retried.
            throw DAVError(.protocolViolation, method: "PUT", path: path,
                           detail: "the server acknowledged the upload but has no file there")
        }
        try Self.checkStored(stored, size: size, path: path)
        var entry = RemoteEntry(stored)
        entry.name = name
        return entry
    }

    /// Throws `StoredMismatch` unless the server's entry has `size` bytes.
    static func checkStored(_ stored: DAVResource, size: Int64, path: String) throws {
        guard (stored.contentLength ?? stored.size) == size else {
            throw StoredMismatch(storedETag: stored.etag,
                                 error: DAVError(.protocolViolation, method: "PUT", path: path,
                                                 detail: "the server stored \(stored.contentLength ?? stored.size ?? -1) bytes of \(size)"))
        }
    }

    /// The server's entry for `path` if it holds exactly the staged bytes (same size and
    /// mtime, then the same content, compared while downloading); nil otherwise. Throws what
    /// stopped the comparison (a 503, a reset), for the caller to retry.
    func identicalOnServer(_ path: String, stagingPath: String, size: Int64, mtime: Int64) throws -> RemoteEntry? {
        guard let stored = try statUnlessMissing(path), !stored.isCollection, (stored.contentLength ?? stored.size) == size,
              let modified = stored.lastModified, Int64(modified.timeIntervalSince1970) == mtime else { return nil }
        let fd = Glibc.open(stagingPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var offset: Int64 = 0
        var same = true
        var local = [UInt8](repeating: 0, count: 256 << 10)
        struct Differs: Error {}
        do {
            // A 412 (changed since the stat) or other bytes: not identical. Any other failure
            // is the caller's to retry.
            try client.get(path, range: nil, ifMatch: stored.etag, sink: .stream({ chunk in
                var done = 0
                while done < chunk.count {
                    let want = min(chunk.count - done, local.count)
                    let n = local.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, want, off_t(offset)) }
                    guard n > 0, memcmp(chunk.baseAddress! + done, local, n) == 0 else { throw Differs() }
                    done += n
                    offset += Int64(n)
                }
            }))
        } catch is Differs {
            same = false
        } catch let error as DAVError where error.kind == .preconditionFailed || error.kind == .notFound {
            same = false
        }
        guard same, offset == size else { return nil }
        var entry = RemoteEntry(stored)
        entry.name = MetadataCache.split(path).name
        return entry
    }

    /// An upload acknowledged by the server that left other bytes than were sent: `storedETag`
    /// names the version it left. Retried like `error`.
    struct StoredMismatch: Error {
        var storedETag: String?
        var error: DAVError
    }

    /// `name (conflict 2026-11-22 190102).ext` next to `path`.
    static func conflictName(for path: String, at date: Date) -> String {
        let (folder, name) = MetadataCache.split(path)
        var time = time_t(date.timeIntervalSince1970)
        var parts = tm()
        localtime_r(&time, &parts)
        let stamp = String(format: "%04d-%02d-%02d %02d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                           parts.tm_hour, parts.tm_min, parts.tm_sec)
        let dot = name.lastIndex(of: ".").flatMap { $0 == name.startIndex ? nil : $0 }
        let renamed = dot.map { "\(name[..<$0]) (conflict \(stamp))\(name[$0...])" } ?? "\(name) (conflict \(stamp))"
        return FolderListing.join(folder, renamed)
    }

    /// `stat`, with a missing resource as nil.
    func statUnlessMissing(_ path: String) throws -> DAVResource? {
        do { return try client.stat(path) } catch let error as DAVError where error.kind == .notFound { return nil }
    }
}
