import FileSystemInterface
import Foundation
import Glibc
import HTTPTransport
import WebDAV

/// The steps of one item, each ending in a committed state.
extension IngestService {
    /// A failure retrying cannot fix: the item is marked `failed` at once.
    struct PermanentFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Works `item` until it reaches a final state, or records why it could not.
    func process(_ start: IngestItem) {
        var item = start
        do {
            while true {
                switch item.state {
                case .pending: item = try prepare(item)
                case .uploading: item = try uploadOriginal(item)
                case .deriving: item = try deriveAndUpload(item)
                case .succeeded, .duplicate:
                    finish(item)
                    return
                case .failed, .quarantined:
                    return
                }
            }
        } catch {
            recordFailure(item, error)
        }
    }

    // MARK: pending → uploading (or duplicate)

    private func prepare(_ start: IngestItem) throws -> IngestItem {
        var item = start
        guard let staged = item.stagingPath else { throw PermanentFailure(description: "the staged copy is gone") }
        let local = folder.localPath(staged)
        var st = stat()
        guard lstat(local, &st) == 0 else { throw PermanentFailure(description: "the staged copy incoming/\(staged) is gone") }
        let (hex, size) = try ContentHash.sha256(ofFile: local)
        item.sha256 = hex
        item.size = size
        item.bucket = settings.prefix
        item.sourceMtime = Int64(st.st_mtim.tv_sec)

        // Duplicate check, first without the lock (cheap, and spares an exif derivation).
        if item.originalPath == nil, let holder = try presentHolder(of: item) {
            return try recordDuplicate(item, of: holder)
        }

        if item.day == nil {
            if settings.dateSource == .exif, let captured = try derivation(for: item).captureDate.flatMap(Self.captureDay) {
                item.day = captured
            } else {
                item.day = Self.dayPath(clock.now, in: settings.timeZone)
            }
        }
        if item.originalPath != nil {
            item.state = .uploading
            try catalog.update(item)
            return item
        }
        return try reservationLock.withLock {
            // Again under the lock: two copies of one file taken at the same moment must not
            // both reserve a name.
            if let holder = try presentHolder(of: item) { return try recordDuplicate(item, of: holder) }
            item.state = .uploading
            item.originalPath = try reserveName(for: item)
            item.originalURL = url(for: item.originalPath!)
            try catalog.update(item)
            return item
        }
    }

    /// The earliest item under this upload prefix with `item`'s content whose original is on
    /// the server: the one `item` is a duplicate of. An active holder is making its original
    /// now; a succeeded one counts only while its original is still there, which the listing
    /// of its folder (one PROPFIND per folder and batch, see `originals(in:)`) shows. A holder
    /// whose original is gone (deleted on the server) is marked `quarantined` and passed over,
    /// so the content is uploaded again instead of being recorded as a copy of nothing.
    func presentHolder(of item: IngestItem) throws -> IngestItem? {
        guard let sha = item.sha256 else { return nil }
        for holder in try catalog.holders(sha256: sha, bucket: settings.prefix, excluding: item.id) {
            guard holder.state == .succeeded, let path = holder.originalPath else { return holder }
            if try isOnServer(path, sha256: sha) { return holder }
            var gone = holder
            gone.state = .quarantined
            gone.quarantineReason = "the original /\(path) is gone from the server (found when item \(item.id) with the same content came in)"
            do { try catalog.update(gone) } catch { logger.error("ingest: marking item \(holder.id) quarantined: \(error)") }
            logger.warning("ingest: item \(holder.id)'s original /\(path) is gone from the server: \(item.name) (item \(item.id)) is uploaded again, item \(holder.id) marked quarantined")
        }
        return nil
    }

    /// Whether the folder listing of `path`'s folder holds it with this content (a SHA-256
    /// checksum of other content means it was replaced; no checksum at all is taken as ours).
    private func isOnServer(_ path: String, sha256: String) throws -> Bool {
        let listing = try originals(in: PathBytes.beforeLastSlash(path))
        guard let checksums = listing[PathBytes.lastComponent(path)] else { return false }
        let sha = checksums.filter { $0.uppercased().hasPrefix("SHA256:") }
        return sha.isEmpty || sha.contains { $0.uppercased() == "SHA256:" + sha256.uppercased() }
    }

    private func recordDuplicate(_ start: IngestItem, of holder: IngestItem) throws -> IngestItem {
        var item = start
        item.state = .duplicate
        item.duplicateOf = holder.id
        item.finishedAt = clock.now
        try catalog.update(item)
        logger.info("ingest: \(item.name) has the content of item \(holder.id) (\(holder.originalPath ?? "?")): recorded as a duplicate")
        return item
    }

    /// Picks `name`, `name (2)`, … in the item's original folder: the first name no other item
    /// has reserved and the server does not hold with other content, whose stem is also free
    /// (derivatives are named by stem: `photo.webp` next to `photo.avif` would share
    /// `photo-w320.webp`, so the second becomes `photo (2).avif`). Reserving is the commit of
    /// the caller (the catalog's unique index settles a race between two workers).
    private func reserveName(for item: IngestItem) throws -> String {
        let folder = originalFolder(item)
        let onServer = try originals(in: folder)
        let ours = "SHA256:" + (item.sha256 ?? "")
        let reserved = Set(try catalog.reservedNames(in: folder, excluding: item.id))
        let reservedStems = Set(reserved.map(Self.stem))
        for n in 1...10_000 {
            let name = n == 1 ? item.name : Self.numbered(item.name, n)
            let stem = Self.stem(name)
            if reserved.contains(name) || reservedStems.contains(stem) { continue }
            if let checksums = onServer[name] {
                // Our own upload from an earlier run whose record was lost: take it over.
                if checksums.contains(where: { $0.uppercased() == ours.uppercased() }) { return folder + "/" + name }
                continue
            }
            if onServer.keys.contains(where: { Self.stem($0) == stem }) { continue }
            return folder + "/" + name
        }
        throw PermanentFailure(description: "no free name for \(item.name) in \(folder)")
    }

    // MARK: uploading → deriving

    private func uploadOriginal(_ start: IngestItem) throws -> IngestItem {
        var item = start
        guard let staged = item.stagingPath, let path = item.originalPath, let sha = item.sha256 else {
            throw PermanentFailure(description: "item \(item.id) is uploading without a staged copy, a path or a checksum")
        }
        let local = folder.localPath(staged)
        let checksum = "SHA256:" + sha
        try ensureFolder(originalFolder(item))
        if let done = try uploadInBulk(item, local: local, path: path, checksum: checksum) { return done }
        // Whether the original was there already, ours: an earlier attempt got this far, and
        // may have made its public link before it stopped.
        var foundOurs = false
        do {
            try put(local, to: path, size: item.size, mtime: item.sourceMtime, checksum: checksum, conditions: .init(createOnly: true))
        } catch let error as DAVError where error.kind == .preconditionFailed {
            // The name exists. Ours from an attempt whose answer was lost (or a crash right
            // after it), a broken copy of ours, or someone else's file.
            let existing = try store.stat(path, properties: .withChecksums)
            let isOurs = try holdsOurContent(existing, at: path, item: item, checksum: checksum)
            foundOurs = isOurs
            if isOurs && Self.storedSize(existing) == item.size {
                logger.info("ingest: /\(path) is already on the server with this content")
            } else if isOurs, let etag = existing.etag {
                logger.warning("ingest: /\(path) on the server has \(Self.storedSize(existing) ?? -1) bytes of \(item.size); uploading again")
                try put(local, to: path, size: item.size, mtime: item.sourceMtime, checksum: checksum, conditions: .init(ifMatch: etag))
            } else {
                logger.info("ingest: /\(path) was taken on the server meanwhile; choosing another name")
                noteOriginal(PathBytes.lastComponent(path), in: originalFolder(item), checksums: existing.checksums)
                item.originalPath = nil
                item.originalURL = nil
                item.state = .pending
                try catalog.update(item)
                return item
            }
        } catch let error as DAVError where error.kind == .conflict {
            forgetFolder(originalFolder(item))
            throw error
        }
        // Trust but verify: the server must hold every byte (a proxy or a full disk can turn a
        // short write into a 201).
        let stored = Self.storedSize(try store.stat(path, properties: .listing))
        guard stored == item.size else {
            throw DAVError(.server, method: "PUT", path: path, detail: "the server stored \(stored ?? -1) of \(item.size) bytes")
        }
        noteOriginal(PathBytes.lastComponent(path), in: originalFolder(item), checksums: [checksum])
        shareIfAsked(&item, path, lookFirst: foundOurs)
        item.state = .deriving
        try catalog.update(item)
        return item
    }

    /// A public link for the original, when the settings ask for one (a failure is logged:
    /// the item goes on without it). With `lookFirst` (the original was found on the server
    /// from an earlier attempt, which may have stopped between making a link and committing
    /// it) a link the original already has is taken instead of making a second: one request
    /// more, only on such a resume. A failed look makes no link, rather than risk a second.
    func shareIfAsked(_ item: inout IngestItem, _ path: String, lookFirst: Bool = false) {
        guard settings.shareLinks && item.shareURL == nil else { return }
        do {
            if lookFirst, let existing = try store.publicShares(of: path).first {
                item.shareURL = existing.url
                logger.info("ingest: /\(path) already has a public link from an earlier attempt; keeping it")
                return
            }
            item.shareURL = try store.createPublicShare(path).url
        } catch {
            logger.warning("ingest: public link for /\(path): \(error)")
        }
    }

    /// A file's size as the server reports it: Nextcloud's `oc:size`, or `getcontentlength`
    /// on servers without it (generic WebDAV).
    static func storedSize(_ resource: DAVResource) -> Int64? {
        resource.size ?? resource.contentLength
    }

    /// Whether `existing` (found at `path` by a 412) holds the item's content: by its SHA-256
    /// checksum where the server keeps one; on a server without checksums (generic WebDAV),
    /// by downloading it and hashing it when its size is the item's (a 412 is rare: a lost
    /// answer or a crash right after an upload).
    private func holdsOurContent(_ existing: DAVResource, at path: String, item: IngestItem, checksum: String) throws -> Bool {
        if !existing.checksums.isEmpty { return existing.checksums.contains { $0.uppercased() == checksum.uppercased() } }
        guard Self.storedSize(existing) == item.size else { return false }
        let copy = workFolder(item).appendingPathComponent("412-check")
        try FileManager.default.createDirectory(at: workFolder(item), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copy) }
        try store.download(path, to: copy.path)
        return "SHA256:" + (try ContentHash.sha256(ofFile: copy.path).hex) == checksum
    }

    private func put(_ local: String, to path: String, size: Int64, mtime: Int64, checksum: String,
                     conditions: WriteConditions) throws {
        let date = Date(timeIntervalSince1970: TimeInterval(mtime))
        _ = try store.sendFile(local, to: path, size: size, mtime: date, conditions: conditions, checksum: checksum,
                               chunkAbove: settings.chunkThreshold, chunkOptions: {
            var options = ChunkedUploadOptions()
            options.chunkSize = settings.chunkThreshold
            return options
        })
    }

    // MARK: deriving → succeeded

    private func deriveAndUpload(_ start: IngestItem) throws -> IngestItem {
        var item = start
        let result = try derivation(for: item)
        apply(result, to: &item)
        var stored: [StoredDerivative] = []
        let dayFolder = settings.prefix + "/" + (item.day ?? "")
        // In one bulk request where the server takes them; what it did not store goes by PUT.
        let inBulk = try derivativesInBulk(result, of: item)
        for derivative in result.derivatives {
            let local = workFolder(item).appendingPathComponent(derivative.relativePath).path
            let remote = dayFolder + "/" + derivative.relativePath
            if inBulk.contains(derivative.relativePath) {
                stored.append(storedRecord(derivative, at: remote))
                continue
            }
            try ensureFolder(PathBytes.beforeLastSlash(remote))
            // Derivatives are made from the original again on a retry; replacing is right.
            try store.put(remote, body: .file(path: local, length: Int64(derivative.bytes)))
            // Verified like the original: the catalog records these bytes, so a short write
            // answered 2xx (a proxy, a full disk) must fail the step, not become a record.
            let onServer = Self.storedSize(try store.stat(remote, properties: .listing))
            guard onServer == Int64(derivative.bytes) else {
                throw DAVError(.server, method: "PUT", path: remote, detail: "the server stored \(onServer ?? -1) of \(derivative.bytes) bytes")
            }
            stored.append(storedRecord(derivative, at: remote))
        }
        item.derivatives = stored
        item.state = .succeeded
        item.persistError = nil
        item.finishedAt = clock.now
        try catalog.update(item)
        logger.info("ingest: \(item.name) → /\(item.originalPath ?? "?") with \(stored.count) derivative(s)\(item.derivativeError.map { " (\($0))" } ?? "")")
        return item
    }

    // MARK: Final

    /// The item left incoming/: its staged file and work folder go, and the folders it wrote
    /// to are relisted on their next use.
    func finish(_ start: IngestItem) {
        var item = start
        let staged = item.stagingPath
        if let staged {
            locked { _ = unlink(folder.localPath(staged)) }
            // The kernel's entry goes at once: a file of the same name written right after
            // `ncfs status` shows the item done must not meet the old entry (ENOENT). The
            // catalog commit below takes an fsync.
            onFinished([], staged)
            item.stagingPath = nil
            do { try catalog.update(item) } catch { logger.error("ingest: clearing item \(item.id)'s staged path: \(error)") }
        }
        try? FileManager.default.removeItem(at: workFolder(item))
        var folders: [String] = []
        if item.originalPath != nil, item.state == .succeeded {
            folders.append(originalFolder(item))
            folders += item.derivatives.map { PathBytes.beforeLastSlash($0.path) }
            folders.append(settings.prefix + "/" + (item.day ?? ""))
        }
        onFinished(Array(Set(folders)), nil)
    }

    private func recordFailure(_ start: IngestItem, _ error: any Error) {
        var item = start
        // The catalog's own state is the truth: re-read it, the failed step did not commit.
        if let current = try? catalog.item(item.id) { item = current }
        item.attempts += 1
        let text = Self.describe(error)
        let permanent = Self.isPermanent(error)
        if permanent || item.attempts >= settings.maxAttempts {
            item.state = .failed
            item.finishedAt = clock.now
            item.persistError = permanent ? text : "\(text) (gave up after \(item.attempts) attempts)"
            logger.error("ingest: item \(item.id) (\(item.name)) failed: \(item.persistError!)")
        } else {
            item.persistError = text
            let delay = Backoff(base: settings.retryBase, cap: settings.retryCap, jitter: 0.25).delay(afterFailures: item.attempts)
            item.nextAttemptAt = clock.now.addingTimeInterval(delay)
            logger.warning("ingest: item \(item.id) (\(item.name)), attempt \(item.attempts): \(text); next in \(Int(delay.rounded())) s")
        }
        do { try catalog.update(item) } catch { logger.error("ingest: recording item \(item.id)'s failure: \(error)") }
    }

    /// Whether a step that failed with `error` gives the item up: what the steps call
    /// permanent, and a server's answer that is not transient — except a missing folder (404,
    /// 409: made again on the next attempt) and a name taken (405 on MKCOL, 412: the next
    /// attempt looks again), which are worth another attempt. Anything else (a local I/O
    /// error, `ncfs-derive` crashing) is tried again.
    static func isPermanent(_ error: any Error) -> Bool {
        if error is PermanentFailure { return true }
        guard let error = error as? DAVError else { return false }
        switch error.kind {
        case .notFound, .conflict, .alreadyExists, .preconditionFailed: return false
        case let kind: return !kind.isTransient
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? DAVError { return error.description }
        return "\(error)"
    }
}
