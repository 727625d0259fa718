import Foundation
import HTTPTransport
import Synchronization

/// Nextcloud chunked upload v2 (reference §4.1): `MKCOL uploads/<uid>/<id>` with the target as
/// `Destination`, numbered chunk PUTs carrying `OC-Total-Length`, then `MOVE <id>/.file` onto
/// the target, which assembles the chunks on the server.
///
/// Chunks are read straight from the local file (never loaded whole) and sent by a few threads
/// at once; each chunk is an idempotent PUT, so the transport's retries cover transient faults.
/// An upload id that is reused (after a crash) resumes: the chunks already on the server with
/// the right size are not sent again.
extension WebDAVClient {
    /// The URL of the user's upload collection for `id`.
    func uploadURL(_ id: String, _ leaf: String? = nil) throws -> String {
        guard let prefix = location.installPrefix, let user = location.userID else {
            throw DAVError(.unsupported, method: "MKCOL", path: "uploads", detail: "chunked upload needs a Nextcloud server")
        }
        var path = "\(prefix)/remote.php/dav/uploads/\(user)/\(id)"
        if let leaf { path += "/" + leaf }
        return location.url(absolutePath: path)
    }

    /// Uploads `localPath` to `path` in chunks. `progress` reports bytes sent (including chunks
    /// found on the server when resuming) and the total.
    @discardableResult
    public func uploadChunked(_ localPath: String, to path: String, mtime: Date? = nil,
                              conditions: WriteConditions = .none, options: ChunkedUploadOptions = .init(),
                              progress: (@Sendable (Int64, Int64) -> Void)? = nil) throws -> PutResult {
        let p = DAVLocation.normalize(path)
        try checkName(of: p, method: "PUT")
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: localPath),
              let total = (attributes[.size] as? NSNumber)?.int64Value else {
            throw DAVError(.transport, method: "PUT", path: p, transport: .bodyUnreadable(path: localPath, errno: ENOENT))
        }
        let destination = location.url(p)
        let chunkCount = max(1, Int((total + options.chunkSize - 1) / options.chunkSize))
        guard chunkCount <= 10_000 else {
            throw DAVError(.badRequest, method: "PUT", path: p, detail: "more than 10,000 chunks: raise the chunk size")
        }
        let collection = try uploadURL(options.uploadID)

        // What the server holds of this upload: chunk number → stored size.
        let chunksOnServer = { () throws -> [Int: Int64] in
            var found: [Int: Int64] = [:]
            let listing = try self.multistatus(method: "PROPFIND", url: collection + "/", path: "uploads/\(options.uploadID)",
                                               depth: "1", body: PropertySet.listing.propfindBody,
                                               root: DAVLocation(baseURL: collection).rootPath)
            for entry in listing where !entry.isCollection {
                if let n = Int(entry.name), let size = entry.contentLength ?? entry.size { found[n] = size }
            }
            return found
        }
        // Resume: what is on the server already? A missing upload folder means a fresh start.
        var present: [Int: Int64] = [:]
        do {
            present = try chunksOnServer()
        } catch let error as DAVError where error.kind == .notFound {
            var headers = HTTPHeaders()
            headers.set("Destination", destination)
            headers.set("OC-Total-Length", String(total))
            try send(HTTPRequest(method: "MKCOL", url: collection, headers: headers, idempotent: false),
                     path: "uploads/\(options.uploadID)")
        }
        let length = { (index: Int) -> Int64 in min(options.chunkSize, total - Int64(index) * options.chunkSize) }
        // Sent, then checked against the server's listing before the MOVE: a chunk the server
        // acknowledged without storing it whole (a proxy's lie, a full disk) is sent again,
        // rather than found by the assembly (which fails the whole upload with a 400).
        var round = 0
        while true {
            try sendChunks(localPath, to: p, destination: destination, collection: collection, total: total, chunkCount: chunkCount,
                           present: present, options: options, progress: progress)
            present = try chunksOnServer()
            let wrong = (0..<chunkCount).filter { present[$0 + 1] != length($0) }
            if wrong.isEmpty { break }
            round += 1
            if round == 3 {
                throw DAVError(.protocolViolation, method: "PUT", path: p,
                               detail: "\(wrong.count) chunk(s) not stored whole after \(round) rounds (first: \(wrong[0] + 1))")
            }
        }

        var headers = HTTPHeaders()
        headers.set("Destination", destination)
        headers.set("OC-Total-Length", String(total))
        if let mtime { headers.set("X-OC-Mtime", String(Int64(mtime.timeIntervalSince1970.rounded(.down)))) }
        // Conditional headers on this MOVE are checked against its own URL, the `.file` of the
        // upload, not the target: Nextcloud 32 answers `If-None-Match: *` with 412 every time.
        // So "create only" is `Overwrite: F`, which the server checks against the target as part
        // of the MOVE, and "only over this version" is a look at the target just before the
        // MOVE: a change in the round trip between the two is not caught (the server's file
        // versions keep the overwritten copy).
        if conditions.createOnly { headers.set("Overwrite", "F") }
        if let tag = conditions.ifMatch {
            let current: DAVResource?
            do { current = try stat(p) } catch let error as DAVError where error.kind == .notFound { current = nil }
            guard let current, current.etag.map(Self.unquote) == Self.unquote(tag) else {
                throw DAVError(.preconditionFailed, method: "MOVE", path: p, status: 412,
                               detail: current == nil ? "the file is gone from the server" : "the file changed on the server")
            }
        }
        // Assembly of a large file can take minutes on the server: no total timeout here, the
        // stall detector still applies.
        let assemble = HTTPRequest(method: "MOVE", url: collection + "/.file", headers: headers, idempotent: false)
        return Self.putResult(try send(assemble, path: p))
    }

    /// PUTs every chunk of `localPath` whose size in `present` is not its own, a few at once.
    private func sendChunks(_ localPath: String, to p: String, destination: String, collection: String, total: Int64, chunkCount: Int,
                            present: [Int: Int64], options: ChunkedUploadOptions,
                            progress: (@Sendable (Int64, Int64) -> Void)?) throws {
        // Chunks are numbered from 1 with five digits, so names sort naturally either way.
        let sent = Atomic<Int64>(0)
        let nextChunk = Atomic<Int>(0)
        let firstError = Mutex<DAVError?>(nil)
        let work: @Sendable (Int) -> Void = { _ in
            while true {
                let index = nextChunk.add(1, ordering: .relaxed).oldValue
                if index >= chunkCount || firstError.withLock({ $0 != nil }) { return }
                let offset = Int64(index) * options.chunkSize
                let length = min(options.chunkSize, total - offset)
                let number = index + 1
                if present[number] == length {
                    let now = sent.add(length, ordering: .relaxed).newValue
                    progress?(now, total)
                    continue
                }
                var headers = HTTPHeaders()
                headers.set("Destination", destination)
                headers.set("OC-Total-Length", String(total))
                headers.set("Content-Type", "application/octet-stream")
                let name = String(format: "%05d", number)
                let request = HTTPRequest(method: "PUT", url: collection + "/" + name, headers: headers,
                                          body: .file(path: localPath, offset: offset, length: length))
                do {
                    try self.send(request, path: "uploads/\(options.uploadID)/\(name)")
                    let now = sent.add(length, ordering: .relaxed).newValue
                    progress?(now, total)
                } catch let error as DAVError {
                    firstError.withLock { if $0 == nil { $0 = error } }
                    return
                } catch {
                    firstError.withLock { if $0 == nil { $0 = DAVError(.transport, method: "PUT", path: p, detail: "\(error)") } }
                    return
                }
            }
        }
        DispatchQueue.concurrentPerform(iterations: max(1, min(options.parallelism, chunkCount)), execute: work)
        if let error = firstError.withLock({ $0 }) { throw error }
    }

    /// Whether a large file should go up with chunked upload v2: only on a Nextcloud files URL
    /// whose server offers chunking in its capabilities (`dav.chunking`), asked once per client
    /// at the first large upload. A server without the OCS endpoint (a generic WebDAV server
    /// behind a Nextcloud-like URL) or that does not offer chunking gets plain PUTs, which every
    /// WebDAV server takes. A transient failure to ask leaves it open: chunks are tried this
    /// time, and `uploadsEndpointMissing` catches a server without the upload collection (then
    /// `noChunkedUploads` settles it).
    public func chunkedUploadsAvailable() -> Bool {
        guard location.isNextcloudLayout else { return false }
        if let known = chunking.withLock({ $0 }) { return known }
        if let retryAt = capabilitiesRetryAt.withLock({ $0 }), Date() < retryAt { return true }
        let available: Bool
        do {
            available = try loadCapabilities().chunking
        } catch let error as DAVError where [.transport, .unavailable, .throttled, .locked, .server].contains(error.kind) {
            capabilitiesRetryAt.withLock { $0 = Date().addingTimeInterval(Self.capabilitiesRetryInterval) }
            logger.info("capabilities not readable now (\(error)); trying a chunked upload")
            return true
        } catch {
            available = false
        }
        chunking.withLock { $0 = available }
        if !available { logger.notice("the server offers no chunked upload; large files are sent with one PUT") }
        return available
    }

    /// Chunked uploads turned out not to work on this server (`why`): whole files from now on.
    public func noChunkedUploads(_ why: String) {
        chunking.withLock { $0 = false }
        logger.notice("\(why); large files are sent with one PUT from now on")
    }

    /// Whether a chunked upload failed because the server has no upload collection: its
    /// PROPFIND or MKCOL of `uploads/<user>/<id>` found it missing, refused or not WebDAV. Not
    /// a failure of one chunk (`uploads/<id>/<n>`), nor of the target (the final MOVE names
    /// the target's path).
    public static func uploadsEndpointMissing(_ error: DAVError) -> Bool {
        let parts = error.path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.first == "uploads", parts.count <= 2 else { return false }
        switch error.kind {
        case .notFound, .conflict, .forbidden, .alreadyExists, .unsupported: return true
        case .server: return [405, 501].contains(error.status ?? 0)
        default: return false
        }
    }

    /// Abandons an upload and frees the server's space.
    public func abortChunkedUpload(_ uploadID: String) throws {
        try send(HTTPRequest(method: "DELETE", url: try uploadURL(uploadID)), path: "uploads/\(uploadID)", accept: [404])
    }
}
