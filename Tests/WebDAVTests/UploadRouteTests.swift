import Foundation
import Synchronization
import TestSupport
import Testing
import WebDAV

/// The one upload-strategy decision (`RemoteStore.route`) and the single-file send built on
/// it (`sendFile`), against the in-memory store: which way each file goes, and that a server
/// whose capabilities promise chunked uploads it cannot take still gets the file, once.
@Suite("Upload route: bulk, PUT or chunks")
struct UploadRouteTests {
    let limits = UploadLimits(bulk: true, bulkMax: 1 << 20, chunkAbove: 4 << 20)

    @Test("small files go in bulk where offered; large ones in chunks where offered; else PUT")
    func routes() {
        let store = MemoryStore()
        #expect(store.route(size: 100, path: "a/b.jpg", limits: limits) == .bulk)
        #expect(store.route(size: 1 << 20, path: "a/b.jpg", limits: limits) == .bulk)
        #expect(store.route(size: (1 << 20) + 1, path: "a/b.jpg", limits: limits) == .put)
        #expect(store.route(size: (4 << 20) + 1, path: "a/b.jpg", limits: limits) == .chunked)
        // A name a part's X-File-Path header cannot carry, a file the server refused from a
        // bulk request before, bulk turned off by the user: PUT.
        #expect(store.route(size: 100, path: "a/trailing ", limits: limits) == .put)
        #expect(store.route(size: 100, path: "a/b.jpg", limits: limits, bulkRefused: true) == .put)
        var off = limits
        off.bulk = false
        #expect(store.route(size: 100, path: "a/b.jpg", limits: off) == .put)
        // What the server does not offer is never chosen.
        let plain = MemoryStore(bulk: false, chunking: false)
        #expect(plain.route(size: 100, path: "a/b.jpg", limits: limits) == .put)
        #expect(plain.route(size: 8 << 20, path: "a/b.jpg", limits: limits) == .put)
        // Once bulk uploads turned out not to work, they are not chosen again.
        store.noBulkUploads("test")
        #expect(store.route(size: 100, path: "a/b.jpg", limits: limits) == .put)
    }

    @Test("sendFile: a large file in chunks, a small one by one PUT, the mtime kept either way")
    func sendsByRoute() throws {
        let store = MemoryStore()
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let large = try Self.file(in: dir, "large", bytes: (5 << 20) + 3)
        let small = try Self.file(in: dir, "small", bytes: 1000)
        let mtime = Date(timeIntervalSince1970: 1_600_000_000)
        let asked = Mutex(0)
        let sentLarge = try store.sendFile(large.path, to: "large", size: (5 << 20) + 3, mtime: mtime, conditions: .init(createOnly: true),
                                           chunkAbove: limits.chunkAbove, chunkOptions: {
            asked.withLock { $0 += 1 }
            var options = ChunkedUploadOptions()
            options.chunkSize = 1 << 20
            return options
        })
        #expect(sentLarge.chunked)
        #expect(asked.withLock { $0 } == 1)
        let sentSmall = try store.sendFile(small.path, to: "small", size: 1000, mtime: mtime, conditions: .none,
                                           chunkAbove: limits.chunkAbove, chunkOptions: { Issue.record("asked for chunk options"); return .init() })
        #expect(!sentSmall.chunked)
        #expect(store.calls(.uploadChunked) == 1 && store.calls(.put) == 1)
        #expect(store.entry("large")?.content == Array(try Data(contentsOf: large)))
        #expect(store.entry("small")?.content == Array(try Data(contentsOf: small)))
        #expect(store.entry("large")?.mtime == 1_600_000_000 && store.entry("small")?.mtime == 1_600_000_000)
    }

    @Test("sendFile: chunked uploads promised but the upload collection missing: one PUT, chunks off for good")
    func missingUploadsEndpoint() throws {
        let store = MemoryStore(uploadsEndpoint: false)
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let large = try Self.file(in: dir, "large", bytes: (5 << 20) + 1)
        let abandoned = Mutex(0)
        let sent = try store.sendFile(large.path, to: "large", size: (5 << 20) + 1, mtime: nil, conditions: .init(createOnly: true),
                                      chunkAbove: limits.chunkAbove, chunkOptions: { ChunkedUploadOptions() },
                                      chunksAbandoned: { abandoned.withLock { $0 += 1 } })
        #expect(!sent.chunked)
        #expect(abandoned.withLock { $0 } == 1)
        #expect(store.calls(.uploadChunked) == 1 && store.calls(.put) == 1)
        #expect(store.entry("large")?.content == Array(try Data(contentsOf: large)))
        // The next large file goes straight by PUT.
        #expect(store.route(size: 8 << 20, path: "other", limits: limits) == .put)
        _ = try store.sendFile(large.path, to: "again", size: (5 << 20) + 1, mtime: nil, conditions: .none,
                               chunkAbove: limits.chunkAbove, chunkOptions: { ChunkedUploadOptions() })
        #expect(store.calls(.uploadChunked) == 1 && store.calls(.put) == 2)
    }

    @Test("sendFile: a refused PUT is thrown as the store's error, nothing stored")
    func refusedPut() throws {
        let store = MemoryStore()
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let small = try Self.file(in: dir, "small", bytes: 10)
        var refusal: DAVError?
        do {
            _ = try store.sendFile(small.path, to: "missing-folder/small", size: 10, mtime: nil, conditions: .none,
                                   chunkAbove: limits.chunkAbove, chunkOptions: { ChunkedUploadOptions() })
        } catch let error as DAVError {
            refusal = error
        }
        #expect(refusal?.kind == .conflict)
        #expect(store.entry("missing-folder/small") == nil)
    }

    static func folder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-route-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func file(in dir: URL, _ name: String, bytes: Int) throws -> URL {
        let url = dir.appendingPathComponent(name)
        // A pattern that differs from chunk to chunk, so chunks out of order or repeated show.
        try Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 10) }).write(to: url)
        return url
    }
}
