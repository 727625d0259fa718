public import Foundation
public import HTTPTransport

/// What the file system (its metadata cache, content fetches, write-back and attribute sync)
/// asks of the server: the one seam between ncfs and Nextcloud. `WebDAVClient` is the real
/// implementation; tests use an in-memory store (TestSupport's `MemoryStore`) with
/// Nextcloud 32's semantics, fault hooks and request counts.
///
/// Paths are "/"-separated, relative to the store's root, unencoded, without leading or
/// trailing slash ("" is the root); implementations NFC-normalise them. ETags travel
/// unquoted both ways (a weak `W/` prefix stripped). Every call blocks the calling thread.
/// Every failure is a `DAVError` whose `kind` is what callers switch on; the kinds each
/// operation can produce are listed with it. `.transport`, `.unavailable`, `.throttled` and
/// `.locked` can come from any request (after the transport's retries), and for a request
/// that changes something they leave open whether the server did it: a caller settles that
/// by looking (`stat`, `list`), never by assuming either way.
public protocol RemoteStore: AnyObject, Sendable {
    /// The name rules in force: checked before any request that creates a name (a bad name
    /// fails with `.invalidName` and costs no request).
    var nameRules: NameRulesBox { get }

    // MARK: Reading

    /// The entry at `path` with `properties` filled in (what was not asked for is nil).
    /// `.notFound` when nothing is there (also when a parent is a file).
    func stat(_ path: String, properties: PropertySet) throws -> DAVResource

    /// A folder and its children (one `Depth: 1` listing; children by name, no duplicates,
    /// none from further down). `.notFound` for a missing path, `.conflict` for a file.
    func list(_ path: String, properties: PropertySet) throws -> (folder: DAVResource, children: [DAVResource])

    /// The file's bytes, or those of `range` (half-open; an empty range asks nothing and
    /// returns no bytes), delivered to `sink`. With `ifMatch` (an ETag) the answer is
    /// `.preconditionFailed` unless the file is still that version, so the sink never sees
    /// another version's bytes. A range past the end fails (`.server`, HTTP 416); a server
    /// that ignores the range fails with `.protocolViolation` rather than being misread. A
    /// `.stream` consumer's error is rethrown as it was thrown. `bytes` holds the content only
    /// for a `.memory` sink (over its limit: `.transport` with `.responseTooLarge`); a `.file`
    /// sink's file appears whole or not at all.
    func get(_ path: String, range: Range<Int64>?, ifMatch: String?, sink: ResponseSink,
             progress: ((Int64, Int64) -> Void)?) throws -> GetResult

    // MARK: Writing

    /// Stores `body` at `path`, creating or replacing the file; `mtime` (whole seconds) becomes
    /// its modification time where the server takes it (`mtimeAccepted`). Conditions fail with
    /// `.preconditionFailed`: `ifMatch` when the file is gone or another version, `createOnly`
    /// when the name exists. `.conflict` when the parent folder is missing or the name is a
    /// folder; `.insufficientStorage` over quota. `checksum` (`"SHA1:…"`) is kept with the file.
    func put(_ path: String, body: HTTPRequestBody, mtime: Date?, conditions: WriteConditions,
             checksum: String?, progress: ((Int64, Int64) -> Void)?) throws -> PutResult

    /// Makes a folder. `.alreadyExists` when the name is taken (also by a folder another
    /// request made at the same moment), `.conflict` when the parent is missing or a file.
    func mkcol(_ path: String) throws

    /// Removes a file or a whole folder: into the server's trash bin, or for good with
    /// `permanently`. `.notFound` when nothing is there, `.forbidden` for the root.
    func delete(_ path: String, permanently: Bool) throws

    /// Renames `from` to `to`; the entry keeps its file id (and, on Nextcloud 32, its own dead
    /// properties, while entries below a moved folder lose theirs). With `overwrite` an entry
    /// at `to` is replaced (into the trash bin); without it that is `.preconditionFailed`.
    /// `.notFound` when `from` is missing, `.conflict` when `to`'s parent is missing or `to`
    /// lies inside `from`, `.forbidden` for the root or `from == to`. The result describes the
    /// moved entry (`created` false when something was replaced).
    func move(_ from: String, to: String, overwrite: Bool) throws -> PutResult

    /// Sets the modification time of an existing file or folder (whole seconds). On Nextcloud
    /// this gives the entry and its ancestors new ETags. `.notFound` when nothing is there.
    func setModificationTime(_ path: String, _ date: Date) throws

    /// Stores ncfs's dead property (`PropertySet.ncfs` `posix`: mode and owner) on `path`, or
    /// removes it with nil; it comes back as `DAVResource.posix` in listings. The ETag does
    /// not change. `.notFound` when nothing is there.
    func setPosixProperty(_ path: String, _ value: String?) throws

    // MARK: Bulk upload (many small files in one request)

    /// Whether bulk uploads may be tried (asked once; false after `noBulkUploads`).
    func bulkUploadsAvailable() -> Bool

    /// Stores `files` in one request, without conditions (an existing file is overwritten).
    /// The outcomes come back in the order of `files`: stored (ETag, file id), refused alone
    /// (a missing parent folder, a folder at the name), or not processed (the server stopped
    /// before it). A thrown error concerns the whole request, and the server may have stored
    /// any of the files, or none: settle by looking. A name that cannot travel in the request
    /// (`WebDAVClient.bulkEligible`) or breaks the name rules fails the whole call with
    /// `.invalidName` before anything is sent. An error for which
    /// `WebDAVClient.bulkEndpointMissing` holds has also turned bulk uploads off.
    func bulkUpload(_ files: [BulkFile]) throws -> [BulkOutcome]

    /// Bulk uploads turned out not to work here (`why`, for the log): PUTs from now on.
    func noBulkUploads(_ why: String)

    // MARK: Chunked upload (large files)

    /// Whether a large file should go up in chunks (asked once; false after `noChunkedUploads`).
    func chunkedUploadsAvailable() -> Bool

    /// Uploads the local file at `localPath` to `path` in chunks, with the conditions and
    /// mtime of `put` (the same error kinds for the target). An error for which
    /// `WebDAVClient.uploadsEndpointMissing` holds means the server has no upload collection:
    /// call `noChunkedUploads` and send the file by `put`. An unreadable local file is
    /// `.transport` with `.bodyUnreadable`.
    func uploadChunked(_ localPath: String, to path: String, mtime: Date?, conditions: WriteConditions,
                       options: ChunkedUploadOptions, progress: (@Sendable (Int64, Int64) -> Void)?) throws -> PutResult

    /// Chunked uploads turned out not to work here (`why`, for the log): whole files from now on.
    func noChunkedUploads(_ why: String)
}

/// The common spellings of the requirements, with the defaults callers use.
extension RemoteStore {
    /// The entry with the listing properties.
    public func stat(_ path: String) throws -> DAVResource { try stat(path, properties: .listing) }

    /// The listing with the listing properties.
    public func list(_ path: String) throws -> (folder: DAVResource, children: [DAVResource]) {
        try list(path, properties: .listing)
    }

    /// The file (or `range`) into memory, at most `limit` bytes.
    public func get(_ path: String, range: Range<Int64>? = nil, limit: Int = ResponseSink.defaultMemoryLimit) throws -> GetResult {
        try get(path, range: range, ifMatch: nil, sink: .memory(limit: limit), progress: nil)
    }

    @discardableResult
    public func get(_ path: String, range: Range<Int64>?, ifMatch: String? = nil, sink: ResponseSink) throws -> GetResult {
        try get(path, range: range, ifMatch: ifMatch, sink: sink, progress: nil)
    }

    @discardableResult
    public func put(_ path: String, body: HTTPRequestBody, mtime: Date? = nil, conditions: WriteConditions = .none) throws -> PutResult {
        try put(path, body: body, mtime: mtime, conditions: conditions, checksum: nil, progress: nil)
    }

    public func delete(_ path: String) throws { try delete(path, permanently: false) }

    @discardableResult
    public func move(_ from: String, to: String) throws -> PutResult { try move(from, to: to, overwrite: true) }

    @discardableResult
    public func uploadChunked(_ localPath: String, to path: String, mtime: Date?, conditions: WriteConditions,
                              options: ChunkedUploadOptions) throws -> PutResult {
        try uploadChunked(localPath, to: path, mtime: mtime, conditions: conditions, options: options, progress: nil)
    }
}

// MARK: The values that cross the seam

/// What a GET told about the file besides its bytes.
public struct GetResult: Sendable {
    /// 200 for the whole file, 206 for a range.
    public var status: Int
    /// The version the bytes belong to (unquoted).
    public var etag: String?
    /// The length of the answer's body (the range's, for a ranged GET).
    public var contentLength: Int64?
    /// The bytes, for a memory sink; empty for the others.
    public var bytes: [UInt8]

    public init(status: Int, etag: String?, contentLength: Int64?, bytes: [UInt8]) {
        self.status = status
        self.etag = etag
        self.contentLength = contentLength
        self.bytes = bytes
    }
}

/// What the server said about a stored (or moved) entry.
public struct PutResult: Sendable, Equatable {
    /// True when the name was new (HTTP 201), false when an entry was replaced (204).
    public var created: Bool
    /// The new version's ETag (unquoted); nil for a folder or a server that sends none.
    public var etag: String?
    /// The numeric file id (Nextcloud's `OC-FileId` is `%08d` + instance id).
    public var fileID: Int64?
    /// Whether the server set the modification time that came with the request; when false
    /// a `setModificationTime` may follow.
    public var mtimeAccepted: Bool

    public init(created: Bool, etag: String?, fileID: Int64?, mtimeAccepted: Bool) {
        self.created = created
        self.etag = etag
        self.fileID = fileID
        self.mtimeAccepted = mtimeAccepted
    }
}

/// The conditions of a write; a failed one is `.preconditionFailed` and changes nothing.
public struct WriteConditions: Sendable {
    /// Only overwrite if the server's ETag is still this one (`If-Match`).
    public var ifMatch: String?
    /// Only create: fail with `.preconditionFailed` if the name exists (`If-None-Match: *`).
    public var createOnly: Bool
    public init(ifMatch: String? = nil, createOnly: Bool = false) {
        self.ifMatch = ifMatch
        self.createOnly = createOnly
    }
    public static let none = WriteConditions()
}

/// One file of a bulk request: its whole content in memory (bulk is for small files).
public struct BulkFile: Sendable {
    /// Relative to the store's root, like every other path here.
    public var path: String
    public var content: [UInt8]
    /// Seconds since the epoch (`X-OC-Mtime`).
    public var mtime: Int64

    public init(path: String, content: [UInt8], mtime: Int64) {
        self.path = path
        self.content = content
        self.mtime = mtime
    }
}

/// What became of one file of a bulk request.
public enum BulkOutcome: Sendable, Equatable {
    /// Stored: the server's ETag (unquoted), file id and permission letters.
    case stored(etag: String, fileID: Int64?, permissions: String)
    /// The server refused this file alone (its message); the others are unaffected. A PUT
    /// of the file on its own gets the precise error.
    case refused(String)
    /// The server stopped before this file (a part it could not parse or whose MD5 did not
    /// match, reported as 400 for the request): not stored, may be sent again.
    case notProcessed
}

/// How a chunked upload is cut and sent.
public struct ChunkedUploadOptions: Sendable {
    /// Chunk size; Nextcloud's S3 path wants 5 MiB..5 GiB for every chunk but the last.
    public var chunkSize: Int64 = 10 << 20
    /// Chunks in flight at once (Nextcloud's web client uses up to 5).
    public var parallelism: Int = 3
    /// Reuse to resume an interrupted upload; a fresh one is made otherwise.
    public var uploadID: String = "ncfs-" + UUID().uuidString.lowercased()
    public init() {}
}

/// The WebDAV client is the real store; every requirement is its own method.
extension WebDAVClient: RemoteStore {}
