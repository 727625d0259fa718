import CCrypto
import Foundation
import HTTPTransport

/// Nextcloud's bulk upload (reference §4.3; server `apps/dav/lib/BulkUpload/`): one
/// `POST /remote.php/dav/bulk` carries many small files as the parts of a `multipart/related`
/// body, each with `X-File-Path` (relative to the user's files root), `Content-Length`, an MD5
/// (`X-File-MD5`) and `X-OC-Mtime`. On a real server a request costs tens of milliseconds of PHP
/// whatever its size, so a hundred files in one request are stored several times faster than
/// a hundred PUTs.
///
/// What Nextcloud 32.0.1 does, seen with curl against the real server:
/// - It answers 200 with a JSON object keyed by each part's `X-File-Path` exactly as sent:
///   `{"error":false,"etag":"<unquoted>","fileid":"<oc:id>","permissions":"RGDNVW"}`, or
///   `{"error":true,"message":"…"}` for a part it could not store (a missing parent folder, a
///   folder at the name, no space). Parts are stored one by one: the others are unaffected.
/// - A part whose bytes do not match its MD5 (or a malformed body) stops the request: 400, with
///   the entries of the parts stored before it and nothing after.
/// - It has no conditions (`If-Match`): an existing file is overwritten. Callers decide per file
///   whether that is safe (see `WriteBack`'s bulk path).
/// - The server trims each header value (PHP `trim`), so a path ending in whitespace would name
///   another file, and a control character would break the part's header: such paths are
///   refused here (`bulkEligible`) and go by PUT.
extension WebDAVClient {
    /// Whether `path` can travel as an `X-File-Path` header unchanged (see the type's notes).
    public static func bulkEligible(_ path: String) -> Bool {
        guard let last = path.unicodeScalars.last, !last.properties.isWhitespace else { return false }
        return !path.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Sends `files` in one bulk request. The outcomes come back in the order of `files`.
    /// Throws a `DAVError` when the request as a whole failed: then the server may have stored
    /// any of the files, or none (a reset after sending), and the caller settles that by
    /// looking, not by sending again blindly. The request is not retried by the transport. A
    /// failure that shows the server has no working endpoint (`bulkEndpointMissing`) also
    /// turns bulk uploads off for this client (`noBulkUploads`).
    public func bulkUpload(_ files: [BulkFile]) throws -> [BulkOutcome] {
        guard let prefix = location.installPrefix, location.isNextcloudLayout else {
            throw DAVError(.unsupported, method: "POST", path: "bulk", detail: "bulk upload needs a Nextcloud server")
        }
        guard !files.isEmpty else { return [] }
        var headerPaths: [String] = []
        for file in files {
            let p = DAVLocation.normalize(file.path)
            try checkName(of: p, method: "PUT")
            guard Self.bulkEligible(p) else {
                throw DAVError(.invalidName, method: "POST", path: p, detail: "this name cannot travel in a bulk upload header")
            }
            headerPaths.append("/" + location.filesRelative(p))
        }
        let boundary = "ncfs-bulk-" + UUID().uuidString.lowercased()
        var body: [UInt8] = []
        body.reserveCapacity(files.reduce(0) { $0 + $1.content.count + 300 })
        for (file, headerPath) in zip(files, headerPaths) {
            let head = "--\(boundary)\r\nX-File-Path: \(headerPath)\r\nX-File-MD5: \(Self.md5Hex(file.content))\r\n"
                + "X-OC-Mtime: \(file.mtime)\r\nContent-Type: application/octet-stream\r\n"
                + "Content-Length: \(file.content.count)\r\n\r\n"
            body += Array(head.utf8)
            body += file.content
            body += Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)

        var headers = HTTPHeaders()
        headers.set("Content-Type", "multipart/related; boundary=\"\(boundary)\"")
        let request = HTTPRequest(method: "POST", url: location.url(absolutePath: "\(prefix)/remote.php/dav/bulk"),
                                  headers: headers, body: .bytes(body), idempotent: false)
        let answer: [String: Any]
        let status: Int
        do {
            // 400 is the server's "stopped at a part": its body still lists what was stored.
            let response = try send(request, path: "bulk", accept: [400])
            status = response.status
            guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
                throw DAVError(response.status == 400 ? .badRequest : .protocolViolation, method: "POST", path: "bulk",
                               status: response.status, detail: "the bulk upload answer is not a JSON object")
            }
            answer = object
        } catch let error as DAVError where Self.bulkEndpointMissing(error) {
            noBulkUploads("the server refused a bulk upload (\(error))")
            throw error
        }
        // Keys are the header paths as sent; Nextcloud stores names NFC, as they were sent.
        var outcomes: [BulkOutcome] = []
        for headerPath in headerPaths {
            guard let entry = answer[headerPath] as? [String: Any] else {
                outcomes.append(.notProcessed)
                continue
            }
            if entry["error"] as? Bool == false, let etag = entry["etag"] as? String, !etag.isEmpty {
                outcomes.append(.stored(etag: Self.unquote(etag), fileID: (entry["fileid"] as? String).flatMap(Self.parseFileID),
                                        permissions: entry["permissions"] as? String ?? ""))
            } else {
                let message = entry["message"] as? String ?? "refused without a message"
                outcomes.append(.refused(String(message.prefix(300))))
            }
        }
        if status == 400 {
            let stopped = outcomes.firstIndex(of: .notProcessed).map { headerPaths[$0] } ?? "?"
            logger.warning("the server stopped a bulk upload at \(stopped) (400); the files after it are sent again")
        }
        return outcomes
    }

    /// The lowercase hex MD5 of `bytes` (OpenSSL's EVP digest), as `X-File-MD5` wants it.
    static func md5Hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &digest, &length, EVP_md5(), nil) == 1
        }
        // EVP_Digest of an in-memory buffer with a built-in digest cannot fail short of memory
        // exhaustion; an empty hash makes the server refuse the part, which is then sent by PUT.
        guard ok else { return "" }
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether the server takes bulk uploads: a Nextcloud files URL whose capabilities offer
    /// `dav.bulkupload`, asked once per client (together with chunking). A failure to ask says
    /// no for now — plain PUTs work everywhere — and is asked again a minute later at the
    /// earliest, not at every batch.
    public func bulkUploadsAvailable() -> Bool {
        guard location.isNextcloudLayout else { return false }
        if let known = bulk.withLock({ $0 }) { return known }
        if let retryAt = capabilitiesRetryAt.withLock({ $0 }), Date() < retryAt { return false }
        let available: Bool
        do {
            let capabilities = try loadCapabilities()
            available = capabilities.bulkUpload
            chunking.withLock { if $0 == nil { $0 = capabilities.chunking } }
        } catch let error as DAVError where [.transport, .unavailable, .throttled, .locked, .server].contains(error.kind) {
            capabilitiesRetryAt.withLock { $0 = Date().addingTimeInterval(Self.capabilitiesRetryInterval) }
            logger.info("capabilities not readable now (\(error)); small files go by PUT, asked again in \(Int(Self.capabilitiesRetryInterval)) s")
            return false
        } catch {
            // No capabilities endpoint (a generic WebDAV server behind a Nextcloud-like URL):
            // neither bulk nor chunked uploads, for good.
            chunking.withLock { if $0 == nil { $0 = false } }
            available = false
        }
        bulk.withLock { $0 = available }
        logger.info(available ? "the server takes bulk uploads: small files go many to a request"
                              : "the server offers no bulk upload; small files are sent with one PUT each")
        return available
    }

    /// Bulk uploads turned out not to work on this server (`why`): PUTs from now on.
    public func noBulkUploads(_ why: String) {
        bulk.withLock { $0 = false }
        logger.notice("\(why); small files are sent with one PUT each from now on")
    }

    /// Whether a bulk request failed because the server has no (working) bulk endpoint: it is
    /// switched off (`bulkupload.enabled`), not routed, or refused by something in front.
    public static func bulkEndpointMissing(_ error: DAVError) -> Bool {
        guard error.path == "bulk" else { return false }
        switch error.kind {
        case .notFound, .forbidden, .unsupported, .conflict, .alreadyExists, .badRequest, .protocolViolation: return true
        case .server: return [405, 415, 501].contains(error.status ?? 0)
        case .unauthorized, .preconditionFailed, .locked, .insufficientStorage, .invalidName, .throttled,
             .unavailable, .transport: return false
        }
    }
}
