import Foundation
import TestSupport
import Testing

/// Ingest of originals above the chunk threshold (10 MiB): one plain PUT on a generic WebDAV
/// server (no chunked upload v2 there), chunks where the server offers them.
@Suite("Ingest of large originals: PUT on generic WebDAV servers, chunks on Nextcloud", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"),
       .enabled(if: IngestHarness.missing == nil, "\(IngestHarness.missing ?? "")"))
struct IngestGenericServerTests {
    /// Drops a 12 MiB file into incoming/ and waits for its item; returns it and the requests.
    static func ingestBigFile(_ h: IngestHarness) throws -> (item: [String: Any], requests: [TestServer.LoggedRequest], source: URL) {
        let source = h.server.dataDir.appendingPathComponent("big.bin")
        try IngestHarness.randomFile(source, bytes: 12 << 20)
        let mark = h.server.mark()
        let copy = run("/bin/cp", [source.path, h.mount.path("incoming/big.bin")], timeout: 60, errors: true)
        #expect(copy.status == 0, "\(copy.out)")
        try h.waitUntilDone(total: 1, timeout: 120)
        let item = try #require(try h.items().first)
        return (item, h.server.requests(since: mark), source)
    }

    @Test("Generic WebDAV server: a 12 MiB file dropped into incoming/ is persisted with one PUT, byte for byte (its size verified by getcontentlength), no chunked upload tried, no orphaned copy")
    func genericServerGetsAPut() throws {
        let h = try IngestHarness(photos: 0, serverArguments: ["--generic"])
        defer { h.stop() }
        let (item, requests, source) = try Self.ingestBigFile(h)
        #expect(item["state"] as? String == "succeeded", "\(item["state"] ?? "") \(item["persistError"] ?? "")")
        let path = "pindeck/media-uploads/\(h.today)/original/big.bin"
        #expect(item["originalPath"] as? String == path)
        #expect((try? IngestHarness.sha256(h.server.filesDir.appendingPathComponent(path))) == (try? IngestHarness.sha256(source)))
        let originals = try FileManager.default.contentsOfDirectory(atPath: h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)/original").path)
        #expect(originals == ["big.bin"], "orphaned copies: \(originals)")
        #expect(!requests.contains { $0.path.contains("/uploads/") }, "chunked upload tried: \(requests.map { "\($0.method) \($0.path)" })")
        #expect(requests.filter { $0.method == "PUT" && $0.path.hasSuffix("/original/big.bin") && $0.status < 300 }.count == 1,
                "\(requests.map { "\($0.method) \($0.path) \($0.status)" })")
    }

    @Test("Nextcloud server: the same file goes up in chunks")
    func nextcloudServerGetsChunks() throws {
        let h = try IngestHarness(photos: 0)
        defer { h.stop() }
        let (item, requests, source) = try Self.ingestBigFile(h)
        #expect(item["state"] as? String == "succeeded", "\(item["state"] ?? "") \(item["persistError"] ?? "")")
        let path = "pindeck/media-uploads/\(h.today)/original/big.bin"
        #expect((try? IngestHarness.sha256(h.server.filesDir.appendingPathComponent(path))) == (try? IngestHarness.sha256(source)))
        #expect(requests.contains { $0.method == "MOVE" && $0.path.contains("/uploads/") && $0.path.hasSuffix("/.file") && $0.status < 300 },
                "\(requests.map { "\($0.method) \($0.path)" })")
    }
}

extension IngestGenericServerTests {
    @Test("Generic WebDAV server: a photo is persisted with its derivatives (sizes verified by getcontentlength); after a crash between its upload and the commit, the 412 on its name is settled by hashing the server's copy, not by a second name")
    func genericServerPhotoAfterCrash() throws {
        let h = try IngestHarness(photos: 0, serverArguments: ["--generic"])
        defer { h.stop() }
        // The check after the original's PUT is held up; the daemon is killed meanwhile, so
        // the next run finds the item uploading and its name taken (412) by its own content.
        try h.server.fault(method: "PROPFIND", pathContains: "/original/alpha.png", action: "delay", count: 1, seconds: 20)
        let source = h.source.appendingPathComponent("alpha.png")
        try Data(contentsOf: source).write(to: URL(fileURLWithPath: h.mount.path("incoming/alpha.png")))
        let stored = h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)/original/alpha.png")
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && (try? IngestHarness.sha256(stored)) != (try? IngestHarness.sha256(source)) { usleep(50_000) }
        #expect(try h.status()["uploading"] as? Int == 1, "the item should be uploading when the daemon is killed")
        h.mount.kill()
        try h.server.control("clear", [:])
        try h.remount()
        try h.waitUntilDone(total: 1, timeout: 90)
        let item = try #require(try h.items().first)
        #expect(item["state"] as? String == "succeeded", "\(item["state"] ?? "") \(item["persistError"] ?? "")")
        #expect(item["originalPath"] as? String == "pindeck/media-uploads/\(h.today)/original/alpha.png")
        #expect((item["derivatives"] as? [[String: Any]] ?? []).count == 4)
        let originals = try FileManager.default.contentsOfDirectory(atPath: stored.deletingLastPathComponent().path)
        #expect(originals == ["alpha.png"], "\(originals)")
    }
}
