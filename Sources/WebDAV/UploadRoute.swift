public import Foundation

/// How one file goes to the server: the one decision that write-back, ingest and `ncfs put`
/// share (`RemoteStore.route`), made from the file's size and name and from what the server
/// offers.
public enum UploadRoute: Sendable, Equatable {
    /// In a bulk request with other small files. Bulk parts carry no conditions: the caller
    /// makes sure the name is free, or at the version it started from, before choosing it.
    case bulk
    /// One PUT of the whole file.
    case put
    /// In chunks, assembled on the server by a final MOVE (large files).
    case chunked
}

/// The sizes that choose an `UploadRoute`.
public struct UploadLimits: Sendable {
    /// Bulk requests at all (`-o bulk=off` turns them off).
    public var bulk: Bool
    /// A file of up to this many bytes may go in a bulk request.
    public var bulkMax: Int64
    /// A file of more than this many bytes goes in chunks where the server offers them.
    public var chunkAbove: Int64

    public init(bulk: Bool, bulkMax: Int64, chunkAbove: Int64) {
        self.bulk = bulk
        self.bulkMax = bulkMax
        self.chunkAbove = chunkAbove
    }
}

extension RemoteStore {
    /// The route for a file of `size` bytes at `path`: bulk when bulk requests are allowed,
    /// the file is small enough, its name can travel in a part's header
    /// (`WebDAVClient.bulkEligible`), it was not refused from a bulk request before
    /// (`bulkRefused`) and the server offers bulk upload; chunks when the file is larger than
    /// `chunkAbove` and the server offers chunked upload; else one PUT. The first call may
    /// read the server's capabilities (a request); later ones use what it said.
    public func route(size: Int64, path: String, limits: UploadLimits, bulkRefused: Bool = false) -> UploadRoute {
        if limits.bulk, !bulkRefused, size <= limits.bulkMax, WebDAVClient.bulkEligible(path), bulkUploadsAvailable() {
            return .bulk
        }
        if size > limits.chunkAbove, chunkedUploadsAvailable() { return .chunked }
        return .put
    }

    /// Sends the local file at `localPath` (`size` bytes) to `path` alone: in chunks when its
    /// route says so (without bulk), else by one PUT. `chunkOptions` is asked only for a
    /// chunked upload (the caller may record the upload id it holds, to resume after a
    /// restart). A server whose upload collection turns out missing (capabilities that could
    /// not be read, or promised too much) gets chunked uploads turned off, `chunksAbandoned`
    /// is called, and the file goes by PUT at once. An mtime the PUT's answer did not confirm
    /// is set by PROPPATCH (best effort). `checksum` goes with a PUT (`OC-Checksum`). Throws what
    /// `put` and `uploadChunked` throw.
    public func sendFile(_ localPath: String, to path: String, size: Int64, mtime: Date?, conditions: WriteConditions,
                         checksum: String? = nil, chunkAbove: Int64, chunkOptions: () -> ChunkedUploadOptions, chunksAbandoned: () -> Void = {},
                         progress: (@Sendable (Int64, Int64) -> Void)? = nil) throws -> (result: PutResult, chunked: Bool) {
        let limits = UploadLimits(bulk: false, bulkMax: 0, chunkAbove: chunkAbove)
        var sent: (result: PutResult, chunked: Bool)?
        if route(size: size, path: path, limits: limits) == .chunked {
            do {
                sent = (try uploadChunked(localPath, to: path, mtime: mtime, conditions: conditions,
                                          options: chunkOptions(), progress: progress), true)
            } catch let error as DAVError where WebDAVClient.uploadsEndpointMissing(error) {
                noChunkedUploads("the server has no chunked-upload endpoint (\(error))")
                chunksAbandoned()
            }
        }
        let done: (result: PutResult, chunked: Bool)
        if let sent {
            done = sent
        } else {
            done = (try put(path, body: .file(path: localPath, offset: 0, length: size), mtime: mtime,
                            conditions: conditions, checksum: checksum, progress: progress), false)
        }
        if !done.result.mtimeAccepted, let mtime { try? setModificationTime(path, mtime) }
        return done
    }
}
