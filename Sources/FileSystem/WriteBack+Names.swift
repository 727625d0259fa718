import Foundation
import Glibc
import Journal
import RemoteCache

/// Names in write-back: unlink and rename of staged files, with their journal rows and their
/// uploads held while the name changes.
extension WriteBack {
    /// Runs `body` with no upload of `files` running or starting. Unlink and rename go
    /// through here: what the server has of a file must be settled while its name changes,
    /// or a late upload would land under a name that is gone, or taken by another file.
    func holdingUploads<T>(of files: [StagedFile], _ body: () throws(FSError) -> T) throws(FSError) -> T {
        condition.lock()
        for file in files {
            apply(file.lock.withLock { file.upload.hold() }, to: file)
        }
        while files.contains(where: { file in file.lock.withLock { file.upload.uploading } }) {
            condition.wait()
        }
        condition.unlock()
        defer {
            condition.lock()
            for file in files {
                // Only uploaders wait for a hold to end.
                apply(file.lock.withLock { file.upload.unhold() }, to: file)
            }
            condition.unlock()
        }
        return try body()
    }

    /// The staged file at `from` now lives at `to` (replacing one staged there). The journal
    /// follows in the same step, so the upload goes to the new name only.
    func rename(from: String, to: String, base: StagedFile.Base?) throws(FSError) {
        // The replaced file's staging file is deleted once the locks are released (declared
        // first, so this defer runs last).
        var leftover: String?
        defer { if let leftover { unlink(leftover) } }
        // `names` from the journal's transaction until the files carry their new paths: no
        // close records a file under the name its row just left. The transaction runs outside
        // `condition`.
        names.lock(); defer { names.unlock() }
        let outcome: UploadJournal.RenameOutcome
        do {
            // The base travels in the rename's transaction: after a restart the row must name
            // the version its upload may replace at the new name.
            if let base {
                outcome = try journal.rename(from: from, to: to, baseETag: base.journalValue)
            } else {
                outcome = try journal.rename(from: from, to: to)
            }
        } catch {
            throw .cacheFailure("journal: \(error)")
        }
        condition.lock(); defer { condition.unlock() }
        // What the replaced file's unanswered attempts may have stored at `to` is the server's
        // version there now, which the file moving in may replace (its base is the replaced
        // file's): it must know those versions as its own, or it meets one as a stranger's.
        var inherited: [StagedFile.SentVersion] = []
        if let replaced = files.removeValue(forKey: to), replaced !== files[from] {
            inherited = replaced.lock.withLock { replaced.unanswered.filter { $0.path == to } }
            leftover = discard(replaced)
        }
        // A staged file has no staged files below it: only a folder's rename needs the scan
        // (over every staged file, which a bulk copy's rename of each temp file must not pay).
        let prefix = from + "/"
        let movedFiles = files[from].map { [(from, $0)] } ?? files.filter { $0.key.hasPrefix(prefix) }.map { ($0.key, $0.value) }
        for (path, file) in movedFiles {
            let moved = to + path.dropFirst(from.count)
            files[path] = nil
            files[moved] = file
            file.lock.lock()
            file.path = moved
            // What a lost attempt may have stored moved too (a folder's MOVE, or the rename's
            // own MOVE of that copy).
            for i in file.unanswered.indices where file.unanswered[i].path == path { file.unanswered[i].path = moved }
            if path == from, let base { file.base = base }
            if path == from { for sent in inherited { file.noteUnanswered(sent) } }
            // The journal gave the renamed row a new generation (an upload that ran under the
            // old name does not complete it): follow it, or the row would wait forever.
            if let id = file.journalID, let generation = outcome.generations[id] { file.generation = generation }
            // A name it failed under (refused by the server) may be fine now.
            _ = file.upload.changed()
            file.lock.unlock()
            // Announced whatever `changed` says: its path and generation changed too.
            reschedule(file)
        }
    }

    /// The staged file at `path` was unlinked: its upload is dropped (or, if running, its
    /// result deleted when it ends).
    func remove(_ path: String) throws(FSError) {
        var leftover: String?
        defer { if let leftover { unlink(leftover) } }
        // The row goes first, under `names` (not `condition`); the caller holds the file's
        // uploads (`holdingUploads`), so none completes or starts in between.
        names.lock(); defer { names.unlock() }
        guard let file = staged(path) else { return }
        do { _ = try journal.remove(remotePath: path) } catch { throw .cacheFailure("journal: \(error)") }
        condition.lock(); defer { condition.unlock() }
        guard files[path] === file else { return }
        files[path] = nil
        leftover = discard(file)
    }

    /// Forgets a staged file (caller holds `condition`). Returns its staging file for the
    /// caller to delete once `condition` is released, unless an upload still reads it (the
    /// upload's end deletes it then).
    func discard(_ file: StagedFile) -> String? {
        file.lock.lock()
        file.removed = true
        let (uploading, stagingPath, path) = (file.upload.uploading, file.stagingPath, file.path)
        file.lock.unlock()
        reschedule(file)
        overlay.unstage(path, file, replacement: nil)
        return uploading ? nil : stagingPath
    }
}
