import FileContent
import Foundation
import Glibc
import Journal
import RemoteCache
import WebDAV

/// Small files in batches: one bulk request for many files where the server offers it, PUTs
/// checked by one listing per folder otherwise. On a real Nextcloud every request costs tens
/// of milliseconds of PHP, so the number of requests is the cost of a bulk copy.
///
/// Bulk upload has no conditions: it overwrites whatever is at a name. A file goes in a bulk
/// request only when a listing of its folder, made for this batch, shows the name as the file
/// was based on: absent for a new file, at the ETag it was opened at for a rewrite. Anything
/// else goes by PUT with `If-Match`/`If-None-Match`, whose failure keeps both versions (a
/// conflict copy). What is left is the window between that listing and the bulk request (well
/// under a second): a change another client makes to the same name in it is overwritten, and
/// kept only by the server's file versions (Nextcloud versions an overwritten file).
///
/// A bulk request's bytes are checked by the server (each part's MD5), so a stored entry needs
/// no check of its own. PUTs are checked by one listing per folder after the batch (a `stat`
/// when the folder has one file in it): a proxy that acknowledges a PUT it did not pass on, or
/// passed on in part, is caught there and the file sent again.
extension WriteBack {
    func uploadBatch(_ batch: [StagedFile], bulk: Bool) {
        let jobs = batch.map { job(for: $0) }
        var settled: [Settled] = []
        var byPut: [Job] = []
        if bulk {
            // By the state the attempt took (a writer may have grown the file since: copy on write).
            let eligible = jobs.filter { job in
                client.route(size: job.size, path: job.path, limits: settings.uploadLimits,
                             bulkRefused: job.file.lock.withLock { job.file.bulkRefused }) == .bulk
            }
            byPut = jobs.filter { job in !eligible.contains { $0.file === job.file } }
            let (safe, unsafe) = safeForBulk(eligible)
            byPut += unsafe
            let sent = sendBulk(safe)
            settled += sent.settled
            byPut += sent.alone
            for job in sent.again { release(job) }
        } else {
            byPut = jobs
        }
        settled += putAndVerify(byPut)
        for outcome in settled { finish(outcome) }
    }

    // MARK: Bulk

    /// Splits `jobs` into those a bulk request may write (the name as their base says, in a
    /// listing of the folder made now) and the others (PUT with conditions).
    func safeForBulk(_ jobs: [Job]) -> (safe: [Job], unsafe: [Job]) {
        var safe: [Job] = []
        var unsafe: [Job] = []
        for (folder, inFolder) in Dictionary(grouping: jobs, by: { MetadataCache.split($0.path).parent }) {
            guard let byName = try? childrenByName(folder) else {
                // Gone, or not listable now: the PUT path reports it precisely.
                unsafe += inFolder
                continue
            }
            for job in inFolder {
                let present = byName[MetadataCache.split(job.path).name]
                let asBased = switch job.base {
                case .new: present == nil
                case .etag(let tag): present.map { !$0.isCollection && $0.etag == tag } ?? false
                case .unconditional: present.map { !$0.isCollection } ?? true
                }
                if asBased { safe.append(job) } else { unsafe.append(job) }
            }
        }
        return (safe, unsafe)
    }

    /// Sends `jobs` in one bulk request. Returns the files settled by it (stored, or for a lost
    /// answer, found or not on the server), those to send alone by PUT now (refused by the
    /// request, or the server has no working bulk endpoint), and those to send again later
    /// (not reached by a request the server stopped).
    func sendBulk(_ jobs: [Job]) -> (settled: [Settled], alone: [Job], again: [Job]) {
        var settled: [Settled] = []
        var alone: [Job] = []
        var again: [Job] = []
        var sent: [Job] = []
        var files: [WebDAVClient.BulkFile] = []
        for job in jobs {
            // The staging file is stable while its upload runs (writers copy on write), and
            // read once: its bytes are the request's and their MD5's.
            let fd = Glibc.open(job.stagingPath, O_RDONLY | O_CLOEXEC)
            let content = fd >= 0 ? try? CachedContent.read(fd, 0..<job.size) : nil
            if fd >= 0 { Glibc.close(fd) }
            guard let content else { alone.append(job); continue }
            sent.append(job)
            files.append(.init(path: job.path, content: content, mtime: job.mtime))
        }
        guard !sent.isEmpty else { return ([], alone, []) }
        let outcomes: [WebDAVClient.BulkOutcome]
        do {
            outcomes = try client.bulkUpload(files)
        } catch let error as DAVError where WebDAVClient.bulkEndpointMissing(error) {
            // (The client has turned bulk uploads off: these go by PUT now.)
            return (settled, alone + sent, [])
        } catch {
            let failure = error as? DAVError ?? DAVError(.server, method: "POST", path: "bulk", detail: "\(error)")
            return (settled + settleLostBulk(sent, failure: failure), alone, [])
        }
        var stopped = false
        for (job, outcome) in zip(sent, outcomes) {
            switch outcome {
            case .stored(let etag, let fileID, let permissions):
                let entry = RemoteEntry(name: MetadataCache.split(job.path).name, isDirectory: false, size: job.size, mtime: job.mtime,
                                        etag: etag, fileID: fileID ?? 0, permissions: Permissions(permissions))
                settled.append(Settled(job: job, outcome: .success(entry), uploadedPath: job.path))
            case .refused(let message):
                logger.info("bulk upload refused /\(job.path) (\(message)); sending it alone")
                job.file.lock.withLock { job.file.bulkRefused = true }
                alone.append(job)
            case .notProcessed where !stopped:
                // The part the server stopped at: alone, so that its own error (if any) shows.
                stopped = true
                job.file.lock.withLock { job.file.bulkRefused = true }
                alone.append(job)
            case .notProcessed:
                again.append(job)
            }
        }
        return (settled, alone, again)
    }

    /// A bulk request failed without an answer we could read (a reset after sending, a 5xx, a
    /// timeout): the server may have stored any of the files. Settled by looking, never by
    /// sending blindly again: a file the listing shows with our size and mtime, at another
    /// version than the one it was based on, is ours; the others failed with `failure` and are
    /// retried after the usual backoff (their next listing sees what is there).
    func settleLostBulk(_ jobs: [Job], failure: DAVError) -> [Settled] {
        var settled: [Settled] = []
        for (folder, inFolder) in Dictionary(grouping: jobs, by: { MetadataCache.split($0.path).parent }) {
            let byName = (try? childrenByName(folder)) ?? [:]
            for job in inFolder {
                let name = MetadataCache.split(job.path).name
                if let found = byName[name], !found.isCollection, (found.contentLength ?? found.size) == job.size,
                   let modified = found.lastModified, Int64(modified.timeIntervalSince1970) == job.mtime,
                   job.base != .etag(found.etag ?? "") {
                    var entry = RemoteEntry(found)
                    entry.name = name
                    logger.info("/\(job.path) was stored by a bulk request whose answer was lost (\(failure))")
                    settled.append(Settled(job: job, outcome: .success(entry), uploadedPath: job.path))
                } else {
                    settled.append(Settled(job: job, outcome: .failure(failure), uploadedPath: job.path))
                }
            }
        }
        return settled
    }

    /// One listing of `folder`: its entries by name.
    func childrenByName(_ folder: String) throws -> [String: DAVResource] {
        Dictionary(try client.list(folder).children.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Gives a taken file back untried: due again at once, the attempt not counted.
    func release(_ job: Job) {
        var leftover: String?
        condition.lock()
        job.file.lock.lock()
        let effects = job.file.upload.givenBack(at: clock.now)
        if job.file.removed { leftover = job.stagingPath }
        job.file.lock.unlock()
        apply(effects, to: job.file)
        condition.unlock()
        _ = try? journal.setState(id: job.journalID, state: .pending, error: nil)
        if let leftover { unlink(leftover) }
    }

    // MARK: PUTs

    /// PUTs each job in turn, then checks what the server stored: one listing per folder for
    /// the files PUT there (a `stat` for a folder with one).
    func putAndVerify(_ jobs: [Job]) -> [Settled] {
        guard jobs.count > 1 else { return jobs.map { attempt($0, verify: true) } }
        var settled: [Settled] = []
        var unchecked: [Settled] = []
        for job in jobs {
            let result = attempt(job, verify: false)
            // A conflict copy was checked on its own; failures have nothing to check.
            if case .success = result.outcome, result.uploadedPath == job.path {
                unchecked.append(result)
            } else {
                settled.append(result)
            }
        }
        for (folder, inFolder) in Dictionary(grouping: unchecked, by: { MetadataCache.split($0.job.path).parent }) {
            var stored: [String: DAVResource] = [:]
            var lookFailure: DAVError?
            do {
                if inFolder.count == 1 {
                    let job = inFolder[0].job
                    stored[MetadataCache.split(job.path).name] = try statUnlessMissing(job.path)
                } else {
                    stored = try childrenByName(folder)
                }
            } catch {
                lookFailure = error as? DAVError ?? DAVError(.transport, method: "PROPFIND", path: folder, detail: "\(error)")
            }
            for result in inFolder {
                let job = result.job
                let name = MetadataCache.split(job.path).name
                if let lookFailure {
                    // Probably stored; the retry's precondition (and content comparison) settles it.
                    settled.append(Settled(job: job, outcome: .failure(lookFailure), uploadedPath: job.path))
                    continue
                }
                guard let found = stored[name], !found.isCollection else {
                    // Not "the parent is gone": the PUT itself said it stored the file. Retried.
                    let error = DAVError(.protocolViolation, method: "PUT", path: job.path,
                                         detail: "the server acknowledged the upload but has no file there")
                    settled.append(Settled(job: job, outcome: .failure(error), uploadedPath: job.path))
                    continue
                }
                do {
                    try Self.checkStored(found, size: job.size, path: job.path)
                    var entry = RemoteEntry(found)
                    entry.name = name
                    settled.append(Settled(job: job, outcome: .success(entry), uploadedPath: job.path))
                } catch let mismatch as StoredMismatch {
                    adoptStoredVersion(job, etag: mismatch.storedETag)
                    settled.append(Settled(job: job, outcome: .failure(mismatch.error), uploadedPath: job.path))
                } catch {
                    settled.append(Settled(job: job, outcome: .failure(DAVError(.server, method: "PUT", path: job.path, detail: "\(error)")),
                                           uploadedPath: job.path))
                }
            }
        }
        return settled
    }
}
