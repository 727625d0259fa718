import FileSystem
import Foundation
import HTTPTransport
import RemoteCache
import TestSupport
import WebDAV



/// A FileSystem on `server` with a manual poll (tests call `cache.poll()`), a long freshness
/// window so request counts do not depend on timing, and a reader that gives up quickly.
func makeFileSystem(_ server: TestServer, freshness: Duration = .seconds(600), poll: Duration? = nil,
                    options: FileSystem.Options = FileSystem.Options()) throws -> FileSystem {
    let cache = MetadataCache(client: try server.client(), configuration: .init(freshness: freshness, pollInterval: poll))
    var config = HTTPClientConfiguration(credentials: server.credentials)
    config.retry = RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(50), maxDelay: .milliseconds(200), budget: .seconds(2))
    config.stallTimeout = .seconds(2)
    let reader = try WebDAVClient(baseURL: server.baseURL, http: HTTPClient(configuration: config))
    return FileSystem(cache: cache, reader: reader, options: options)
}

/// Records invalidations the FileSystem reports.
final class InvalidationRecorder: InvalidationObserver, @unchecked Sendable {
    // @unchecked: `items` is guarded by `lock`.
    private let lock = NSLock()
    private var items: [Invalidation] = []
    func invalidate(_ items: [Invalidation]) { lock.lock(); self.items += items; lock.unlock() }
    var all: [Invalidation] { lock.lock(); defer { lock.unlock() }; return items }
}

extension FileSystem {
    /// readdirplus of the folder at `inode` collected in one go (a large buffer).
    func listAll(_ inode: UInt64, plus: Bool = true) throws(FSError) -> [DirectoryEntry] {
        let fh = try opendir(inode)
        defer { releasedir(fh) }
        var out: [DirectoryEntry] = []
        var offset: Int64 = 0
        while true {
            var batch: [DirectoryEntry] = []
            try readdir(fh, offset: offset, plus: plus) { entry in
                guard batch.count < 100 else { return false }
                batch.append(entry)
                return true
            }
            if batch.isEmpty { return out }
            out += batch
            offset = batch.last!.nextOffset
        }
    }

    func readAll(_ inode: UInt64, chunk: Int = 128 << 10) throws(FSError) -> [UInt8] {
        let (fh, _) = try open(inode, writable: false)
        defer { release(fh) }
        var out: [UInt8] = []
        while true {
            let bytes = try read(fh, offset: Int64(out.count), count: chunk)
            if bytes.isEmpty { return out }
            out += bytes
        }
    }
}

