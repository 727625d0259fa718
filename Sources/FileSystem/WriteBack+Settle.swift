import Foundation
import Glibc
import Journal
import RemoteCache
import WebDAV

/// Settling an upload's outcome: the server fix-ups and the journal first, then the staged
/// file's state, the overlay and the folder times.
extension WriteBack {
    func finish(_ settled: Settled) {
        let job = settled.job
        if case .failure(let error) = settled.outcome, error.kind.isTransient, settled.uploadedPath == job.path {
            // The server may have stored it without our hearing of it (no answer), or did (the
            // check after an answer failed, alone or for a batch). Only a check says which: the
            // answer itself may come from something in between that never passed the body on.
            job.file.lock.withLock { job.file.noteUnanswered(.init(path: job.path, size: job.size, mtime: job.mtime)) }
        }
        finish(job.file, outcome: settled.outcome, uploadedPath: settled.uploadedPath, originalPath: job.path,
               stagingPath: job.stagingPath, generation: job.generation, journalID: job.journalID, attempt: job.attempt)
    }

    /// Settles one upload in two steps. First, with no lock but the file's own: the server
    /// fix-ups (a DELETE if the file was unlinked meanwhile, a MOVE if a folder rename took it
    /// elsewhere) and the journal commit. The file stays `uploading` throughout, so an unlink or
    /// rename of it waits (`holdingUploads`), while closes, creates and other renames go on:
    /// `condition` is not held across a request or a commit. Then, under `condition`, the
    /// in-memory state: the overlay, and whether the staged file is done with (only if no close
    /// recorded a newer version meanwhile: its journal row and generation are still this
    /// upload's).
    func finish(_ file: StagedFile, outcome: Result<RemoteEntry, DAVError>, uploadedPath: String, originalPath: String,
                        stagingPath: String, generation: Int64, journalID: Int64, attempt: Int) {
        // Staging files to delete, deleted once `condition` is released (declared first, this
        // defer runs last): an unlink can take milliseconds (ext4 mounted with `discard`
        // waits for the device), and every close, create and rename waits for `condition`.
        var leftovers: [String] = []
        defer { for path in leftovers { unlink(path) } }
        // Folder times to set again (see `folderTimes`), and a late DELETE, sent once
        // `condition` is released.
        var folderTimes: [(path: String, mtime: Int64)] = []
        var lateDelete: String?
        defer {
            if let lateDelete { try? client.delete(lateDelete) }
            for folder in folderTimes {
                do {
                    try client.setModificationTime(folder.path, Date(timeIntervalSince1970: TimeInterval(folder.mtime)))
                } catch {
                    // Gone or renamed meanwhile: nothing left to keep.
                    if let error = error as? DAVError, error.kind == .notFound {
                        condition.withLock { _ = self.folderTimes.removeValue(forKey: folder.path) }
                    } else {
                        logger.warning("setting the modification time of /\(folder.path) again after its uploads: \(error)")
                    }
                }
            }
        }

        // Step 1: outside `condition`.
        let (removedBefore, target) = file.lock.withLock { (file.removed, file.path) }
        var completed = false
        switch outcome {
        case .success(let entry):
            // Before the overlay shows the server's version: no open may find older bytes of
            // the file cached under the same ETag.
            uploaded(entry.fileID)
            if removedBefore {
                // Unlinked while uploading (its journal row went with it): the name must not
                // reappear on the server.
                try? client.delete(uploadedPath)
                break
            }
            if target != originalPath && uploadedPath == originalPath {
                // Renamed (with its folder) while uploading: the upload went to the old name; move it along.
                _ = try? client.move(uploadedPath, to: target)
            }
            // The base moves on before the row is completed: a close recording a new version
            // from now on names this upload's ETag as its base, in memory and in its row (a
            // row of a newer generation gets it from `complete`). Both under `journalLock`, so
            // no close's record falls between them.
            file.journalLock.lock()
            file.lock.withLock {
                file.base = entry.etag.isEmpty ? .unconditional : .etag(entry.etag)
                file.fileID = entry.fileID
                file.unanswered = []
            }
            completed = (try? journal.complete(id: journalID, generation: generation, serverETag: entry.etag.isEmpty ? nil : entry.etag)) ?? false
            file.journalLock.unlock()
            // A newer generation waits: its row is pending again, not "uploading".
            if !completed { _ = try? journal.setState(id: journalID, state: .pending, error: nil) }
        case .failure(let error):
            let permanent = WriteBack.isPermanent(error, moved: target != originalPath)
            _ = try? journal.setState(id: journalID, state: permanent ? .failed : .pending, error: "\(error)")
        }

        // Step 2: the in-memory state, under `condition`.
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        file.lock.lock()
        let removed = file.removed
        let movedMeanwhile = file.path != originalPath
        file.lock.unlock()
        // The lifecycle's event for the outcome, carried out last (under `condition`), once
        // every field below is settled: due again (a newer version, a retry), or not.
        var effects: UploadLifecycle.Effects = []
        defer { apply(effects, to: file) }

        switch outcome {
        case .success(let entry):
            if removed {
                // Unlinked after step 1 looked (only the unmount's abandon does that): delete now.
                effects = file.lock.withLock { file.upload.ended() }
                if !removedBefore { lateDelete = uploadedPath }
                leftovers.append(stagingPath)
                return
            }
            file.lock.lock()
            if file.journalID == journalID { file.uploadedGeneration = max(file.uploadedGeneration, generation) }
            effects = file.upload.succeeded()
            file.chunkUploadID = nil
            // Done with only if no close recorded a newer version since (a new row, or a new
            // generation of this one), nothing writes to it, and it stayed where it was.
            let idle = completed && file.journalID == journalID && file.generation == generation && file.upload.writers == 0 && !file.dirty
                && file.stagingPath == stagingPath && !movedMeanwhile
            let currentPath = file.path
            file.lock.unlock()
            if uploadedPath != originalPath {
                // A conflict copy: the original name shows the server's version again.
                overlay.present(uploadedPath, entry)
                if idle {
                    files[currentPath] = nil
                    overlay.unstage(currentPath, file, replacement: nil)
                    cache.invalidate(MetadataCache.split(currentPath).parent)
                }
            } else if idle {
                files[currentPath] = nil
                overlay.unstage(currentPath, file, replacement: .present(entry, since: Overlay.now()))
            }
            if stagingPath != file.stagingPath || idle { leftovers.append(stagingPath) }
            folderTimes = folderTimesDue(after: uploadedPath)
        case .failure(let error):
            let permanent = WriteBack.isPermanent(error, moved: movedMeanwhile)
            let delay = retryDelay(after: attempt, error: error)
            file.lock.lock()
            effects = file.upload.failed(FSError.remote(error), permanent: permanent,
                                         retryAt: clock.now.addingTimeInterval(movedMeanwhile ? 0 : delay))
            file.lock.unlock()
            logger.warning("upload of /\(originalPath) failed (attempt \(attempt)\(permanent ? ", kept until the file changes" : ", retrying in \(Int(delay)) s")): \(error)")
            if removed { leftovers.append(stagingPath) }
        }
    }

    /// How long a failed upload waits before its next attempt (caller holds `condition`): the
    /// backoff for its number of failures, the longest for a full server. While the unmount's
    /// drain waits, at most half the time it has left (and at least a second): a backoff ending
    /// past the drain's deadline would leave the file untried for the next mount although the
    /// unmount still waits for it; halving the time left tries it a few more times, not in a
    /// tight loop.
    func retryDelay(after attempt: Int, error: DAVError) -> Double {
        let delay = error.kind == .insufficientStorage ? settings.retry.cap : settings.retry.delay(afterFailures: attempt)
        guard let drainDeadline else { return delay }
        return min(delay, max(1, drainDeadline.timeIntervalSince(clock.now) / 2))
    }

    /// Whether an upload that failed with `error` is kept until the file changes rather than
    /// retried: what is not transient, except that the parent folder gone (404, 409) is worth
    /// a retry under the new name of a file renamed meanwhile.
    static func isPermanent(_ error: DAVError, moved: Bool) -> Bool {
        if error.kind == .notFound || error.kind == .conflict { return !moved }
        return !error.kind.isTransient
    }
}
