import Foundation
public import HTTPTransport
public import Logging
import Synchronization

/// A WebDAV client for one tree (the base URL), speaking Nextcloud's dialect where the server
/// has it and plain RFC 4918 elsewhere.
///
/// Paths are "/"-separated, relative to the base URL, unencoded; the client NFC-normalises and
/// percent-encodes them. Calls block the calling thread (see `HTTPClient`). Failures are
/// `DAVError`s; nothing here retries beyond the transport's policy.
public final class WebDAVClient: Sendable {
    public let location: DAVLocation
    public let http: HTTPClient
    let logger: Logger
    /// Name rules checked before any request that creates a name. Defaults to Nextcloud's
    /// built-in rules; `loadCapabilities()` replaces them with the server's.
    public let nameRules: NameRulesBox
    /// Whether the server takes chunked uploads: nil until the first large upload asks (see
    /// `chunkedUploadsAvailable`).
    let chunking = Mutex<Bool?>(nil)
    /// Whether the server takes bulk uploads: nil until asked (see `bulkUploadsAvailable`).
    let bulk = Mutex<Bool?>(nil)
    /// When the capabilities may be asked again after they could not be read (uploaders ask
    /// before every batch; during an outage that must not be a request each time).
    let capabilitiesRetryAt = Mutex<Date?>(nil)
    /// How long an unreadable capabilities answer stands before it is asked for again.
    static let capabilitiesRetryInterval: TimeInterval = 60

    public init(baseURL: String, http: HTTPClient, logger: Logger = Logger(label: "ncfs.webdav")) throws {
        self.location = try DAVLocation(baseURL: baseURL)
        self.http = http
        self.logger = logger
        self.nameRules = NameRulesBox(location.isNextcloudLayout ? NameRules() : .generic)
    }

    // The values of the `RemoteStore` seam, under the names callers of the client know.
    public typealias GetResult = WebDAV.GetResult
    public typealias PutResult = WebDAV.PutResult
    public typealias WriteConditions = WebDAV.WriteConditions
    public typealias BulkFile = WebDAV.BulkFile
    public typealias BulkOutcome = WebDAV.BulkOutcome
    public typealias ChunkedUploadOptions = WebDAV.ChunkedUploadOptions

    // MARK: PROPFIND

    public enum Depth: String, Sendable { case zero = "0", one = "1" }

    /// PROPFIND with an explicit property list, parsed while it streams in.
    /// The first element describes `path` itself.
    public func propfind(_ path: String, depth: Depth, properties: PropertySet = .listing) throws -> [DAVResource] {
        let p = DAVLocation.normalize(path)
        let url = location.url(p, collection: depth == .one)
        return try multistatus(method: "PROPFIND", url: url, path: p, depth: depth.rawValue,
                               body: properties.propfindBody, root: location.rootPath)
    }

    /// The resource at `path` (`Depth: 0`).
    public func stat(_ path: String, properties: PropertySet = .listing) throws -> DAVResource {
        let p = DAVLocation.normalize(path)
        guard let first = try propfind(p, depth: .zero, properties: properties).first else {
            throw DAVError(.protocolViolation, method: "PROPFIND", path: p, detail: "empty multistatus")
        }
        return first
    }

    /// A folder and its children in one `Depth: 1` request.
    public func list(_ path: String, properties: PropertySet = .listing) throws -> (folder: DAVResource, children: [DAVResource]) {
        let p = DAVLocation.normalize(path)
        return try Self.splitListing(try propfind(p, depth: .one, properties: properties), folder: p)
    }

    /// Splits the responses of a `Depth: 1` PROPFIND on `folder` (a normalized path) into the
    /// folder and its children.
    ///
    /// The server is not trusted to answer only what was asked: an entry further down (or
    /// elsewhere under the root) would otherwise appear as a child under its last name, and a
    /// name sent twice would appear twice in one directory. Such entries are dropped; of a
    /// repeated name the first is kept, as for the folder itself.
    public static func splitListing(_ responses: [DAVResource], folder p: String) throws -> (folder: DAVResource, children: [DAVResource]) {
        guard let folder = responses.first(where: { $0.path == p }) else {
            throw DAVError(.protocolViolation, method: "PROPFIND", path: p, detail: "the listing does not contain the folder itself")
        }
        guard folder.isCollection else {
            throw DAVError(.conflict, method: "PROPFIND", path: p, detail: "not a folder")
        }
        // Byte-wise, like `DAVResource.name`: a combining mark after a slash makes the two one
        // Character, which Character comparisons would not take for a slash.
        let prefix = Array((p.isEmpty ? "" : p + "/").utf8)
        var seen = Set<String>()
        let children = responses.filter { child in
            let path = child.path.utf8
            guard path.count > prefix.count, path.starts(with: prefix),
                  !path.dropFirst(prefix.count).contains(UInt8(ascii: "/")) else { return false }
            return seen.insert(child.name).inserted
        }
        return (folder, children)
    }

    /// Sends a request whose answer is a multistatus and parses it as it arrives.
    func multistatus(method: String, url: String, path: String, depth: String?, body: String, root: String,
                     extraHeaders: HTTPHeaders = HTTPHeaders()) throws -> [DAVResource] {
        var headers = extraHeaders
        headers.set("Content-Type", "application/xml; charset=utf-8")
        if let depth { headers.set("Depth", depth) }
        // Drops the 404 propstat blocks Nextcloud would otherwise send for every entry.
        headers.set("Prefer", "return=minimal")
        let request = HTTPRequest(method: method, url: url, headers: headers, body: .text(body))
        // The transport retries a stream sink only while nothing was fed to it, so one parser
        // serves every attempt.
        let parser = MultistatusParser(requestURL: url, root: root)
        let response = try send(request, path: path, sink: .stream({ chunk in try parser.feed(chunk) }))
        // RFC 8144 §2.1: with `return=minimal`, a PROPPATCH whose every property was set may be
        // answered 204 with no body. Nextcloud (Sabre) does exactly that; there is nothing to parse.
        if method == "PROPPATCH" && response.status == 204 { return [] }
        guard response.status == 207 else {
            throw DAVError(.protocolViolation, method: method, path: path, status: response.status,
                           detail: "expected 207 Multi-Status")
        }
        do {
            return try parser.finish()
        } catch {
            throw DAVError(.protocolViolation, method: method, path: path, detail: "\(error)")
        }
    }

    // MARK: Sending

    /// Performs `request` and turns non-2xx answers and transport failures into `DAVError`.
    @discardableResult
    func send(_ request: HTTPRequest, path: String, sink: ResponseSink = .memory(limit: 1 << 20),
              accept: Set<Int> = [],
              progress: ((Int64, Int64) -> Void)? = nil) throws -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try http.perform(request, sink: sink, progress: progress)
        } catch let error as HTTPError {
            throw DAVError(.transport, method: request.method, path: path, transport: error)
        } catch let error as DAVError {
            throw error
        } catch let error as MultistatusError {
            throw DAVError(.protocolViolation, method: request.method, path: path, detail: "\(error)")
        }
        if response.isSuccess || accept.contains(response.status) { return response }
        throw DAVError.from(response: response, method: request.method, path: path)
    }

    // MARK: Reading

    /// GET of a whole file or of `range` (half-open), into memory.
    public func get(_ path: String, range: Range<Int64>? = nil, limit: Int = ResponseSink.defaultMemoryLimit) throws -> GetResult {
        try get(path, range: range, sink: .memory(limit: limit))
    }

    /// GET streamed to a sink (a file or a consumer); a 200 answer to a ranged request is
    /// refused rather than misread as the range. With `ifMatch` (an ETag, unquoted) the server
    /// answers 412 instead of another version's bytes, so a sink never sees content of a
    /// version the caller did not ask for.
    @discardableResult
    public func get(_ path: String, range: Range<Int64>?, ifMatch: String? = nil, sink: ResponseSink,
                    progress: ((Int64, Int64) -> Void)? = nil) throws -> GetResult {
        let p = DAVLocation.normalize(path)
        var headers = HTTPHeaders()
        if let ifMatch, !ifMatch.isEmpty { headers.set("If-Match", Self.quote(ifMatch)) }
        if let range {
            guard !range.isEmpty else { return GetResult(status: 206, etag: nil, contentLength: 0, bytes: []) }
            headers.set("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")
        }
        let request = HTTPRequest(method: "GET", url: location.url(p), headers: headers, acceptCompressed: false)
        let response = try send(request, path: p, sink: sink, progress: progress)
        if range != nil && response.status != 206 {
            throw DAVError(.protocolViolation, method: "GET", path: p, status: response.status,
                           detail: "the server ignored the Range header")
        }
        return GetResult(status: response.status, etag: response.headers["ETag"].map(Self.unquote),
                         contentLength: response.headers["Content-Length"].flatMap { Int64($0) },
                         bytes: response.body)
    }

    /// Downloads `path` into `localPath` (written to a temporary name, renamed when complete).
    public func download(_ path: String, to localPath: String, progress: ((Int64, Int64) -> Void)? = nil) throws {
        try get(path, range: nil, sink: .file(path: localPath), progress: progress)
    }

    // MARK: Writing

    /// PUT of `body` at `path`. `mtime` travels as `X-OC-Mtime` (ignored by generic servers,
    /// where `mtimeAccepted` stays false and a PROPPATCH may follow).
    @discardableResult
    public func put(_ path: String, body: HTTPRequestBody, mtime: Date? = nil, conditions: WriteConditions = .none,
                    checksum: String? = nil, progress: ((Int64, Int64) -> Void)? = nil) throws -> PutResult {
        let p = DAVLocation.normalize(path)
        try checkName(of: p, method: "PUT")
        var headers = HTTPHeaders()
        headers.set("Content-Type", "application/octet-stream")
        if let mtime { headers.set("X-OC-Mtime", String(Int64(mtime.timeIntervalSince1970.rounded(.down)))) }
        if let tag = conditions.ifMatch { headers.set("If-Match", Self.quote(tag)) }
        if conditions.createOnly { headers.set("If-None-Match", "*") }
        if let checksum { headers.set("OC-Checksum", checksum) }
        let request = HTTPRequest(method: "PUT", url: location.url(p), headers: headers, body: body)
        let response = try send(request, path: p, progress: progress)
        return Self.putResult(response)
    }

    static func putResult(_ response: HTTPResponse) -> PutResult {
        PutResult(
            created: response.status == 201,
            etag: (response.headers["OC-ETag"] ?? response.headers["ETag"]).map(unquote),
            fileID: response.headers["OC-FileId"].flatMap(parseFileID),
            mtimeAccepted: response.headers["X-OC-MTime"]?.lowercased() == "accepted"
        )
    }

    /// MKCOL. Throws `.alreadyExists` (405) and `.conflict` (409, parent missing).
    public func mkcol(_ path: String) throws {
        let p = DAVLocation.normalize(path)
        try checkName(of: p, method: "MKCOL")
        // Not idempotent for retries: a retried MKCOL that had succeeded would answer 405.
        do {
            try send(HTTPRequest(method: "MKCOL", url: location.url(p, collection: true), idempotent: false), path: p)
        } catch let error as DAVError where error.kind == .forbidden || error.status == 423 {
            // Nextcloud 32 (seen on a real server) answers the losers of MKCOLs of one name at
            // once with 405, but also with 403 "Could not create directory" or 423 (the name is
            // locked by the winner). A folder that is there now is what the 405 would have said.
            if (try? stat(p, properties: .listing))?.isCollection == true {
                throw DAVError(.alreadyExists, method: "MKCOL", path: p, status: 405, detail: "made at the same time by another request")
            }
            throw error
        }
    }

    /// DELETE: into the Nextcloud trash bin, or gone for good with `permanently`
    /// (`X-NC-Skip-Trashbin`, NC 31+; generic servers always delete for good).
    public func delete(_ path: String, permanently: Bool = false) throws {
        let p = DAVLocation.normalize(path)
        var headers = HTTPHeaders()
        if permanently { headers.set("X-NC-Skip-Trashbin", "true") }
        try send(HTTPRequest(method: "DELETE", url: location.url(p), headers: headers), path: p)
    }

    /// MOVE (rename). `overwrite: false` fails with `.preconditionFailed` if `to` exists.
    @discardableResult
    public func move(_ from: String, to: String, overwrite: Bool = true) throws -> PutResult {
        try transfer("MOVE", from, to, overwrite: overwrite)
    }

    /// COPY (server side; the copy gets a new file id).
    @discardableResult
    public func copy(_ from: String, to: String, overwrite: Bool = true) throws -> PutResult {
        try transfer("COPY", from, to, overwrite: overwrite)
    }

    private func transfer(_ method: String, _ from: String, _ to: String, overwrite: Bool) throws -> PutResult {
        let source = DAVLocation.normalize(from)
        let target = DAVLocation.normalize(to)
        try checkName(of: target, method: method)
        var headers = HTTPHeaders()
        headers.set("Destination", location.url(target))
        headers.set("Overwrite", overwrite ? "T" : "F")
        let request = HTTPRequest(method: method, url: location.url(source), headers: headers, idempotent: false)
        return Self.putResult(try send(request, path: source))
    }

    /// Sets the modification time of an existing file (PROPPATCH of `{DAV:}lastmodified`,
    /// which Nextcloud applies with `touch`).
    public func setModificationTime(_ path: String, _ date: Date) throws {
        let p = DAVLocation.normalize(path)
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let body = """
            <?xml version="1.0" encoding="utf-8"?>
            <d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:lastmodified>\(seconds)</d:lastmodified></d:prop></d:set></d:propertyupdate>
            """
        let result = try multistatus(method: "PROPPATCH", url: location.url(p), path: p, depth: nil, body: body, root: location.rootPath)
        if let failed = result.first?.failedProperties["{DAV:}lastmodified"] {
            throw DAVError(DAVError.kind(forStatus: failed, method: "PROPPATCH"), method: "PROPPATCH", path: p,
                           status: failed, detail: "the server refused to set the modification time")
        }
    }

    /// Checks the last component of a path that is about to be created.
    func checkName(of path: String, method: String) throws {
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        try nameRules.value.check(name, method: method, path: path)
    }

    // MARK: Helpers

    static func unquote(_ etag: String) -> String {
        var s = etag.trimmingCharacters(in: .whitespaces)
        if s.hasPrefix("W/") { s.removeFirst(2) }
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = String(s.dropFirst().dropLast()) }
        return s
    }

    static func quote(_ etag: String) -> String { etag == "*" ? etag : "\"\(etag)\"" }

    /// `OC-FileId: 00000042ocabcdef` → 42.
    static func parseFileID(_ header: String) -> Int64? {
        let digits = header.prefix { $0.isASCII && $0.isNumber }
        return digits.isEmpty ? nil : Int64(digits)
    }
}

/// The name rules in force, replaced once capabilities are read. A class so the immutable,
/// Sendable client can still learn them after construction; the lock makes that safe.
public final class NameRulesBox: @unchecked Sendable {
    private let lock = NSLock()
    private var rules: NameRules
    public init(_ rules: NameRules) { self.rules = rules }
    public var value: NameRules {
        get { lock.withLock { rules } }
        set { lock.withLock { rules = newValue } }
    }
}
