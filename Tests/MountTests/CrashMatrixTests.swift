import Foundation
import TestSupport
import Testing

/// kill -9 of the daemon at fixed points of the write-back and ingest pipelines. The server
/// holds one kind of request (a stall) so that the kill lands exactly there; the test fails
/// itself if the held request never came, since a kill that hit nothing proves nothing. After
/// a restart every accepted file must be on the server exactly once and intact, both SQLite
/// files must pass `PRAGMA integrity_check`, and no journal row or catalog item may be left in
/// a state that is not final. (Kills at random moments of a long ingest: IngestTests.crashes.)
@Suite("Crash matrix: kill -9 at fixed points", .serialized, .timeLimit(.minutes(10)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct CrashMatrixTests {
    /// Where the write-back kill lands.
    enum WritePoint: String, CaseIterable, CustomTestStringConvertible, Sendable {
        /// Headers of a PUT sent, its body not yet taken by the server.
        case midPut = "in the middle of a PUT"
        /// Every chunk of a 25 MiB chunked upload stored, the final MOVE held.
        case beforeChunkMove = "between the chunks and the chunked upload's MOVE"
        /// `fusermount3 -u` done, the daemon draining its uploads (one of them held).
        case duringDrain = "during the unmount's drain"
        /// A bulk request (many small files in one) sent, its answer held.
        case midBulk = "in the middle of a bulk request"

        var testDescription: String { rawValue }
    }

    @Test("write-back: kill -9 at a fixed point, restart: every closed file on the server once, intact; journal empty and sound",
          arguments: WritePoint.allCases)
    func writeBack(_ point: WritePoint) throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("in/.keep"), []) }
        defer { server.stop() }
        // The PUT points send each file by PUT (bulk upload off); by default the small files
        // go many to a bulk request, which `midBulk` holds.
        let options = ["upload_delay=0.2"] + (point == .midPut || point == .duringDrain ? ["bulk=off"] : [])
        var mount = try MountedServer(server, options: options)
        defer { mount.unmount() }

        var expected: [String: [UInt8]] = [:]
        var rng = SeededGenerator(seed: 11)
        let count = point == .beforeChunkMove ? 1 : 12
        let hold: (method: String, path: String)
        switch point {
        case .midPut, .duringDrain: hold = ("PUT", "/in/w")
        case .beforeChunkMove: hold = ("MOVE", "/.file")
        case .midBulk: hold = ("POST", "/dav/bulk")
        }
        try stall(server, method: hold.method, path: hold.path)
        for i in 0..<count {
            let size = point == .beforeChunkMove ? 25 << 20 : 1000 + i * 5000
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(Posix.create(mount.path("in/w\(i).bin"), bytes))
            expected["w\(i).bin"] = bytes
        }
        try waitForHold(server, "\(hold.method) \(hold.path)")
        if point == .duringDrain {
            // The unmount returns at once; the daemon stays to drain its uploads.
            #expect(run("/usr/bin/fusermount3", ["-u", mount.path("")]).status == 0)
            usleep(300_000)
            #expect(run("/usr/bin/pgrep", ["-f", "ncfs mount .*\(mount.mountpoint.path)"]).status == 0, "the daemon is draining")
        }
        mount.kill()
        let left = runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user]).out
        #expect(!left.hasPrefix("nothing pending"), "the kill left nothing pending: \(left)")

        try server.control("clear", [:])
        mount = try MountedServer(server)
        #expect(mount.unmount() == 0, "every upload done at unmount")
        let names = try FileManager.default.contentsOfDirectory(atPath: server.filesDir.appendingPathComponent("in").path)
            .filter { $0 != ".keep" }.sorted()
        #expect(names == expected.keys.sorted(), "exactly the files closed, once each")
        for (name, bytes) in expected {
            #expect(try Array(Data(contentsOf: server.filesDir.appendingPathComponent("in/\(name)"))) == bytes, "\(name) intact")
        }
        #expect(runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user]).out.hasPrefix("nothing pending"))
        let journal = try #require(Self.find("journal.sqlite", in: server.dataDir))
        #expect(Self.integrity(journal) == "ok")
        #expect(run("/usr/bin/sqlite3", [journal.path, "SELECT count(*) FROM uploads"]).out.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }

    /// Where the ingest kill lands.
    enum IngestPoint: String, CaseIterable, CustomTestStringConvertible, Sendable {
        /// Items committed to the catalog with their names reserved; the date folder's MKCOL
        /// held, so nothing has reached the server.
        case afterCommit = "between the catalog commit and the upload"
        /// An original's PUT held.
        case midOriginal = "in the middle of an original's PUT"
        /// A derivative's PUT held: the original is stored, its derivatives partly.
        case midDerivative = "during a derivative's upload"
        /// A bulk request (an item's original and derivatives in one) held.
        case midBulk = "in the middle of a bulk request"

        var testDescription: String { rawValue }
    }

    @Test("ingest: kill -9 at a fixed point, restart: every item succeeded once, originals intact, all derivatives; catalog sound, nothing stuck",
          arguments: IngestPoint.allCases)
    func ingest(_ point: IngestPoint) throws {
        let total = 12
        // The PUT points are the step-by-step path's (bulk upload off); by default an item's
        // five files go in one bulk request.
        let stepByStep = point == .midOriginal || point == .midDerivative
        let h = try IngestHarness(photos: 0, generated: total, arguments: stepByStep ? ["-o", "bulk=off"] : [])
        defer { h.stop() }
        let hold: (method: String, path: String) = switch point {
        case .afterCommit: ("MKCOL", "/original")
        case .midOriginal: ("PUT", "/original/")
        case .midDerivative: ("PUT", "/high/")
        case .midBulk: ("POST", "/dav/bulk")
        }
        try stall(h.server, method: hold.method, path: hold.path)
        let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", h.mount.path("incoming") + "/"], timeout: 120)
        #expect(copy.status == 0)
        try waitForHold(h.server, "\(hold.method) \(hold.path)")
        let before = try h.status()
        #expect((before["succeeded"] as? Int ?? 0) < total, "the kill came after everything was done: \(before)")
        h.mount.kill()

        try h.server.control("clear", [:])
        try h.remount()
        try h.waitUntilDone(total: total, timeout: 180)
        let items = try h.items()
        #expect(items.count == total)
        #expect(items.allSatisfy { $0["state"] as? String == "succeeded" },
                "\(items.filter { $0["state"] as? String != "succeeded" }.map { "\($0["name"]!) \($0["state"]!)" })")
        let day = h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)")
        let originals = try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent("original").path).sorted()
        let sources = try FileManager.default.contentsOfDirectory(atPath: h.generated.path).sorted()
        #expect(originals == sources, "orphans or duplicates: \(Set(originals).symmetricDifference(sources).sorted())")
        for name in sources {
            #expect(try IngestHarness.sha256(day.appendingPathComponent("original/\(name)"))
                    == IngestHarness.sha256(h.generated.appendingPathComponent(name)), "\(name) intact")
        }
        for (folder, count) in [("low", total), ("high", 2 * total), ("preview", total)] {
            let names = try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent(folder).path)
            #expect(names.count == count, "\(folder): \(names.sorted())")
        }
        #expect(Self.integrity(h.state.appendingPathComponent("catalog.sqlite")) == "ok")
        #expect(try FileManager.default.contentsOfDirectory(atPath: h.mount.path("incoming")).isEmpty)
    }

    // MARK: Helpers

    /// Every `method` request whose path contains `path` is held by the server (up to 60 s,
    /// then its connection is closed) until `clear`.
    private func stall(_ server: TestServer, method: String, path: String) throws {
        try server.control("fault", ["method": method, "path_contains": path, "action": "stall", "seconds": 60, "count": -1])
    }

    /// Waits until the server holds a request the stall caught; fails the test otherwise.
    private func waitForHold(_ server: TestServer, _ what: String) throws {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let listing = run("/usr/bin/curl", ["-s", "\(server.origin)/__control/faults"]).out
            if let object = try? JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [String: Any],
               let faults = object["faults"] as? [[String: Any]], faults.contains(where: { ($0["hits"] as? Int ?? 0) > 0 }) {
                return
            }
            usleep(50_000)
        }
        Issue.record("no \(what) reached the server within 60 s: the kill would hit nothing held")
        throw MountError("nothing held")
    }

    private static func find(_ name: String, in folder: URL) -> URL? {
        FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL }.first { $0.lastPathComponent == name }
    }

    private static func integrity(_ database: URL) -> String {
        run("/usr/bin/sqlite3", [database.path, "PRAGMA integrity_check"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
