import FileContent
import Foundation
import Glibc
import HTTPTransport
import Journal
import RemoteCache
internal import SystemPackage
import WebDAV

/// The staging half of write-back: a staging file per written file (copied on write while an
/// upload reads the old one), each close recording the content in the journal before it
/// returns, and the wake-ups of the uploaders when a file falls due.
extension WriteBack {
    func newStagingPath() -> String {
        nextStagingNumber += 1
        return stagingDirectory.appendingPathComponent("\(getpid())-\(nextStagingNumber)-\(UInt32.random(in: 0...UInt32.max))").path
    }

    /// Stages `path` for writing: its existing staged file (copied first if an upload is
    /// reading it), or a new one holding the server's content `entry` (nil: a new file), or
    /// nothing when `truncate`.
    func stage(_ path: String, entry: RemoteEntry?, truncate: Bool) throws(FSError) -> StagedFile {
        condition.lock()
        if let file = files[path] {
            // One more writer from here on: the file cannot be done with and dropped while this
            // open copies it.
            let (effects, uploading, source) = file.lock.withLock {
                (file.upload.openedForWriting(), file.upload.uploading, file.stagingPath)
            }
            apply(effects, to: file)
            guard uploading else { condition.unlock(); return file }
            // Copy on write: the running upload keeps reading the old staging file. Copied
            // outside `condition`: a large file takes seconds, and every close waits for it.
            let copy = newStagingPath()
            condition.unlock()
            do {
                try WriteBack.makeStagingFile(copy, from: truncate ? nil : source)
            } catch {
                closeWriter(file)
                throw error
            }
            // A copy not needed after all is deleted once the locks are released (declared
            // first, this defer runs last).
            var unused: String?
            defer { if let unused { unlink(unused) } }
            // Under `journalLock`: a close's record checks which staging file is current and
            // names it in the row, and no switch may fall between the two.
            file.journalLock.lock(); defer { file.journalLock.unlock() }
            condition.lock(); defer { condition.unlock() }
            file.lock.lock(); defer { file.lock.unlock() }
            if file.upload.uploading && file.stagingPath == source {
                file.stagingPath = copy
                // The journal row names the old staging file: the next record must name this one.
                file.contentChanged = true
            } else {
                // The upload ended meanwhile (nothing reads the old file now), or another open
                // copied it first: the file as it is serves.
                unused = copy
            }
            return file
        }
        let stagingPath = newStagingPath()
        condition.unlock()

        // Outside the lock: fetching the server's content may take long.
        let base: StagedFile.Base = if let entry { entry.etag.isEmpty ? .unconditional : .etag(entry.etag) } else { .new }
        if let entry, !truncate, entry.size > 0 {
            do {
                try client.get(path, range: nil, ifMatch: entry.etag.isEmpty ? nil : entry.etag, sink: .file(path: stagingPath))
            } catch {
                unlink(stagingPath)
                throw FSError.wrap(error)
            }
            chmod(stagingPath, 0o600)
        } else {
            let fd = Glibc.open(stagingPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .cacheFailure("creating \(stagingPath): \(Errno(rawValue: errno))") }
            Glibc.close(fd)
        }
        let size: Int64 = (truncate || entry == nil) ? 0 : entry!.size
        let file = StagedFile(path: path, stagingPath: stagingPath, size: size,
                              mtime: truncate || entry == nil ? Int64(clock.now.timeIntervalSince1970) : entry!.mtime,
                              base: base, fileID: entry?.fileID ?? 0)
        // Not shared yet: nothing to schedule.
        _ = file.upload.openedForWriting()
        file.dirty = truncate || entry == nil
        // The server's content, fetched into a new staging file, is not durable here yet.
        file.contentChanged = true
        condition.lock()
        if let raced = files[path] {
            // Another opener staged it first: use theirs.
            apply(raced.lock.withLock { raced.upload.openedForWriting() }, to: raced)
            condition.unlock()
            unlink(stagingPath)
            return raced
        }
        files[path] = file
        overlay.set(path, .staged(file))
        condition.unlock()
        return file
    }

    /// Creates the staging file `path`: empty, or a copy of `source`.
    static func makeStagingFile(_ path: String, from source: String?) throws(FSError) {
        guard let source else {
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .cacheFailure("creating \(path): \(FileSystem.lastErrorText())") }
            Glibc.close(fd)
            return
        }
        do { try FileManager.default.copyItem(atPath: source, toPath: path) } catch {
            unlink(path)
            throw .cacheFailure("copying the staged file: \(error.localizedDescription)")
        }
    }

    /// Makes the content durable and recorded in the journal, if it changed. Called by every
    /// close (`flush`), so `close` returns only when a crash can no longer lose it. A change of
    /// the mtime alone (utimens after close, as rsync does) is recorded without the bytes.
    func record(_ file: StagedFile) throws(FSError) {
        file.lock.lock()
        guard file.dirty else { file.lock.unlock(); return }
        let (stagingPath, size, contentChanged, recorded) = (file.stagingPath, file.size, file.contentChanged, file.journalID != nil)
        file.dirty = false
        file.contentChanged = false
        file.lock.unlock()
        do throws(FSError) {
            if !contentChanged && recorded, try recordMtime(file) { return }
            try recordContent(file, stagingPath: stagingPath, size: size)
        } catch {
            // Recorded again, whole, by the next close.
            file.lock.lock(); file.dirty = true; file.contentChanged = true; file.lock.unlock()
            throw error
        }
    }

    /// Gives the file's journal row its new mtime. False when the row is gone (its upload
    /// completed meanwhile) or is another's: then the file must be recorded whole.
    func recordMtime(_ file: StagedFile) throws(FSError) -> Bool {
        // Under `names`, so a rename (which moves rows by path) is wholly before or after.
        do {
            names.lock(); defer { names.unlock() }
            file.lock.lock()
            let (path, mtime, journalID) = (file.path, file.mtime, file.journalID)
            file.lock.unlock()
            let row: PendingUpload?
            do { row = try journal.setMtime(remotePath: path, mtime: mtime) } catch { throw .cacheFailure("journal: \(error)") }
            guard let row, row.id == journalID else { return false }
            file.lock.withLock { file.generation = row.generation }
        }
        condition.withLock { reschedule(file) }
        return true
    }

    /// Records the staging file's `size` bytes: in the journal row when small, else fsynced
    /// in place and named by the row.
    func recordContent(_ file: StagedFile, stagingPath: String, size: Int64) throws(FSError) {
        let fd = Glibc.open(stagingPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cacheFailure("opening the staged copy of /\(file.path): \(FileSystem.lastErrorText())") }
        defer { Glibc.close(fd) }
        // Short (truncated while we read): fsync in place instead.
        let content = size <= settings.inlineLimit ? try? CachedContent.read(fd, 0..<size) : nil
        if content == nil && fsync(fd) != 0 {
            throw .cacheFailure("fsync of the staged copy of /\(file.path): \(FileSystem.lastErrorText())")
        }
        // Under `names`, so a rename (which moves rows by path, under it) is wholly before or
        // after; under the file's `journalLock`, so an upload completing now (which moves the
        // base ETag on and completes the row) and a copy on write (which switches the staging
        // file) are too. Not under `condition`: the commit may fsync, and other closes go on.
        do {
            names.lock(); defer { names.unlock() }
            file.journalLock.lock(); defer { file.journalLock.unlock() }
            guard try recordRow(file, stagingPath: stagingPath, size: size, content: content) else { return }
        }
        condition.withLock { reschedule(file) }
    }

    /// The journal half of `recordContent` (caller holds `names` and the file's `journalLock`):
    /// upserts the row for the staging file. False when the staging file was switched meanwhile.
    private func recordRow(_ file: StagedFile, stagingPath: String, size: Int64, content: [UInt8]?) throws(FSError) -> Bool {
        file.lock.lock()
        let (path, currentSize, mtime, base) = (file.path, file.size, file.mtime, file.base)
        let switched = file.stagingPath != stagingPath
        if switched { file.dirty = true; file.contentChanged = true }
        file.lock.unlock()
        // Copied on write meanwhile: the writer of the new copy records that one when it closes.
        if switched { return false }
        // A write since `size` was taken has marked the file dirty again, for its own close.
        let recordedSize = content == nil ? currentSize : size
        do {
            // Only a row that holds the bytes may skip the fsync: a row naming an unsynced
            // staging file could outlive that file's bytes in a power cut.
            let durability: SQLiteDatabase.Durability = content != nil && settings.crashSafeClose ? .crashSafe : .durable
            let row = try journal.upsert(remotePath: path, stagingFile: stagingPath, size: recordedSize, mtime: mtime, baseETag: base.journalValue,
                                         content: content, durability: durability)
            file.lock.lock()
            // A new row (the previous one completed meanwhile) counts its generations from 1:
            // what was uploaded under the old row says nothing about it.
            if file.journalID != row.id { file.uploadedGeneration = 0 }
            file.journalID = row.id
            file.generation = row.generation
            file.lock.unlock()
            return true
        } catch {
            throw .cacheFailure("journal: \(error)")
        }
    }

    /// A writer closed (release): once no writer is left, the upload may start after the
    /// settle delay.
    func closeWriter(_ file: StagedFile) {
        condition.lock()
        apply(file.lock.withLock { file.upload.writerClosed(at: clock.now, settle: settings.settleDelay) }, to: file)
        condition.unlock()
    }

    /// Announces the file's readiness to the schedule after a change to it (caller holds
    /// `condition`, not the file's lock), and wakes the uploaders only if none of the sleeping
    /// ones would look again in time for it: a busy uploader looks again when its upload ends,
    /// a sleeping one at its wake time, and waking all of them at every close of a bulk copy
    /// cost each a look under `condition`, which every close, create and rename waits for.
    func reschedule(_ file: StagedFile) {
        let readiness = file.lock.withLock { file.readiness }
        if schedule.announce(file, readiness) { condition.broadcast() }
    }

    /// Carries out what an event of the file's lifecycle asks (caller holds `condition`, not
    /// the file's lock).
    func apply(_ effects: UploadLifecycle.Effects, to file: StagedFile) {
        if effects.contains(.reschedule) { reschedule(file) }
        if effects.contains(.wakeWaiters) { condition.broadcast() }
    }

    /// Marks content changed (a write, truncate or utimens).
    func touched(_ file: StagedFile, size: Int64? = nil, mtime: Int64? = nil, extend: Int64? = nil) {
        file.lock.lock()
        if let size { file.size = size }
        if let extend { file.size = max(file.size, extend) }
        file.mtime = mtime ?? (size != nil || extend != nil ? Int64(clock.now.timeIntervalSince1970) : file.mtime)
        file.dirty = true
        if size != nil || extend != nil { file.contentChanged = true; file.bulkRefused = false }
        // Its effect needs no announcement: a write comes with a writer, whose close announces
        // the file (taking `condition` at every write would cost more than it tells).
        _ = file.upload.changed()
        file.lock.unlock()
    }

    /// Blocks until the server has this file's recorded content, or fails with the upload's
    /// error (or EIO after `fsyncTimeout`). A cancel of the calling FUSE request (its caller
    /// was interrupted) ends the wait; the upload goes on.
    func waitUploaded(_ file: StagedFile) throws(FSError) {
        let deadline = clock.now.addingTimeInterval(settings.fsyncTimeout)
        let cancellation = Cancellation.current
        condition.lock()
        defer { condition.unlock() }
        file.lock.lock()
        let target = file.generation
        let waits = file.uploadedGeneration < target
        let effects: UploadLifecycle.Effects = waits ? file.upload.fsyncWaits(at: clock.now) : []
        file.lock.unlock()
        apply(effects.union(.wakeWaiters), to: file)
        guard waits else { return }
        // However it ends, this fsync's request ends with it (under `condition`, held here).
        defer { apply(file.lock.withLock { file.upload.fsyncEnds() }, to: file) }
        while true {
            file.lock.lock()
            let done = file.uploadedGeneration >= target || file.removed
            let failure = file.upload.failure
            let permanent = file.upload.failedPermanently
            file.lock.unlock()
            if done { return }
            if let failure, permanent { throw failure }
            if cancellation?.isCancelled == true {
                throw .remote(DAVError(.transport, method: "PUT", path: file.path, detail: "fsync interrupted", transport: .cancelled))
            }
            // Checked after the state above: an upload that ended as the deadline came (its
            // signal and the timeout in one wake-up) counts.
            if clock.now >= deadline {
                throw failure ?? .remote(DAVError(.transport, method: "PUT", path: file.path,
                                                  detail: "not uploaded within \(Int(settings.fsyncTimeout)) s"))
            }
            // In short steps when a cancel may come (it has no way to signal `condition`).
            let until = cancellation == nil ? deadline : min(deadline, clock.now.addingTimeInterval(0.2))
            _ = clock.wait(condition, until: until)
        }
    }
}
