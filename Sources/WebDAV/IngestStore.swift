/// What the ingest pipeline asks of the server: the file system's seam (`RemoteStore`) and
/// what only ingest uses beyond it: the store's location, public link shares and downloads.
/// `WebDAVClient` is the real implementation; tests use TestSupport's `MemoryStore`, which
/// answers as Nextcloud 32 does.
///
/// The conventions of `RemoteStore` hold here too: paths relative to the store's root, calls
/// that block, failures as `DAVError`s whose `kind` callers switch on, and `.transport`,
/// `.unavailable`, `.throttled` or `.locked` possible from any request.
public protocol IngestStore: RemoteStore {
    /// Where the store lives: the catalog records each stored file's URL
    /// (`location.url(path)`), the address pindeck reads it from.
    var location: DAVLocation { get }

    /// Creates a read-only public link share of `path` (OCS `shareType=3`) and returns it.
    /// Every call makes a new share, as Nextcloud does: a caller that must not have two asks
    /// only once. `.notFound` when nothing is at `path`, `.unsupported` on a server without
    /// the OCS API (generic WebDAV), `.protocolViolation` when the answer carries no token.
    func createPublicShare(_ path: String) throws -> PublicShare

    /// The public link shares of `path` this user made (none: empty), in the server's order:
    /// what a caller that may have made one before a crash looks at before making another.
    /// `.notFound` when nothing is at `path`, `.unsupported` on a server without the OCS API,
    /// `.protocolViolation` when the answer is not a list of shares.
    func publicShares(of path: String) throws -> [PublicShare]

    /// The file's bytes into the local file `localPath`, which appears whole or not at all
    /// (written under a temporary name, renamed when complete). `.notFound` when nothing is
    /// at `path`; a local file that cannot be written is `.transport` with `.sinkFailed`.
    func download(_ path: String, to localPath: String, progress: ((Int64, Int64) -> Void)?) throws
}

extension IngestStore {
    /// The download without progress reports.
    public func download(_ path: String, to localPath: String) throws {
        try download(path, to: localPath, progress: nil)
    }
}

/// The WebDAV client is the real store; every requirement is its own method.
extension WebDAVClient: IngestStore {}
