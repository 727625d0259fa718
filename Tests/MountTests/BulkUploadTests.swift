import Foundation
import TestSupport
import Testing

/// Small files written through the mount go up many to a request (Nextcloud's bulk upload),
/// and every fault of such a request ends with each file on the server exactly once, intact,
/// at its mtime, with nothing left pending.
@Suite("Bulk upload through the mount", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct BulkUploadTests {
    /// The mtime of every file `sourceTree` writes: 2022-05-06 07:08:09 UTC.
    static let sourceMtime: TimeInterval = 1_651_820_889

    /// `count` files of 1–40 KB under `folder` of a new local tree, mtimes set to 2022-05-06.
    static func sourceTree(_ count: Int, seed: UInt64) throws -> (root: URL, files: [String: [UInt8]]) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-bulk-src-\(UUID().uuidString)")
        var rng = SeededGenerator(seed: seed)
        var files: [String: [UInt8]] = [:]
        for i in 0..<count {
            let name = String(format: "f-%03d.bin", i)
            let bytes = (0..<Int.random(in: 1_000...40_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            files[name] = bytes
            try write(root.appendingPathComponent(name), bytes)
        }
        _ = run("/bin/sh", ["-c", "find '\(root.path)' -type f -exec touch -d '2022-05-06 07:08:09 UTC' {} +"])
        return (root, files)
    }

    /// Every file of `files` is in `folder` on the server with its bytes and mtime, and nothing else is.
    static func checkStored(_ server: TestServer, folder: String, _ files: [String: [UInt8]]) {
        let dir = server.filesDir.appendingPathComponent(folder)
        let names = Set((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
        #expect(names == Set(files.keys), "exactly the copied files, no conflict copies: extra \(names.subtracting(files.keys).sorted().prefix(5)), missing \(Set(files.keys).subtracting(names).sorted().prefix(5))")
        let wrong = files.filter { name, bytes in Posix.bytes(dir.appendingPathComponent(name).path) != bytes }.keys.sorted()
        #expect(wrong.isEmpty, "content differs: \(wrong.prefix(5))")
        let stamp = run("/bin/sh", ["-c", "cd '\(dir.path)' && stat -c %Y * | sort -u"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(stamp == "1651820889", "every mtime is the source's (2022-05-06 07:08:09 UTC): \(stamp.prefix(100))")
    }

    static func nothingPending(_ server: TestServer) {
        let status = runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user])
        #expect(status.out.hasPrefix("nothing pending"), "the journal is empty: \(status.out.prefix(300))")
    }

    @Test("cp -a of 300 small files: a few bulk requests instead of a PUT and a PROPFIND per file; every file intact at its mtime")
    func bulkCopy() throws {
        let (source, files) = try Self.sourceTree(300, seed: 11)
        defer { try? FileManager.default.removeItem(at: source) }
        let server = try populatedServer { _ in }
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        let mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("photos")], timeout: 120).status == 0, "cp -a")
        #expect(mount.unmount() == 0, "unmount drains every upload: \(mount.logTail)")
        let requests = server.requests(since: mark)
        let posts = requests.filter { $0.method == "POST" && $0.path.hasSuffix("/dav/bulk") }
        let puts = requests.filter { $0.method == "PUT" }
        let stored = posts.flatMap { $0.stored ?? [] }
        #expect(!posts.isEmpty, "bulk requests were made")
        #expect(Set(stored).count == stored.count, "no file stored twice by bulk requests")
        #expect(stored.count + puts.count == files.count, "each file sent once: \(stored.count) in bulk, \(puts.count) by PUT")
        // The tail (a file due alone) goes by PUT; the bulk of the copy must not.
        #expect(Double(posts.count + puts.count) <= 0.1 * Double(files.count),
                "upload requests per file: \(posts.count) POST + \(puts.count) PUT for \(files.count) files")
        let byMethod = Dictionary(grouping: requests, by: \.method).mapValues(\.count)
        #expect(requests.count <= files.count / 4, "all requests of the copy: \(byMethod)")
        Self.checkStored(server, folder: "photos", files)
        Self.nothingPending(server)
    }

    @Test("bulk faults: an answer lost after the server stored the files, a 503 on the endpoint, one file refused, a request stopped at a bad MD5; every file once, intact, at its mtime; the lost answer settled by looking, not by sending again")
    func bulkFaults() throws {
        let (source, files) = try Self.sourceTree(80, seed: 12)
        defer { try? FileManager.default.removeItem(at: source) }
        let server = try populatedServer { _ in }
        defer { server.stop() }
        let proxy = try FaultProxy()
        defer { proxy.stop() }
        let mount = try MountedServer(server, arguments: ["--drain-timeout", "60"], proxy: proxy)
        defer { mount.unmount() }
        try proxy.setRules([["method": "POST", "path": "/dav/bulk$", "action": "reset", "forward": true, "count": 1],
                            ["method": "POST", "path": "/dav/bulk$", "action": "status", "status": 503, "count": 1]])
        // Every bulk request refuses f-041.bin and stops at f-062.bin (not only the first: the
        // request whose answer is lost may be the one that met them).
        try server.control("fault", ["method": "BULK-PART", "path_contains": "f-041.bin", "message": "injected: no space for this one", "count": -1])
        try server.control("fault", ["method": "BULK-PART", "path_contains": "f-062.bin", "action": "md5", "count": -1])
        let mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("faults")], timeout: 120).status == 0, "cp -a")
        #expect(mount.unmount() == 0, "unmount drains every upload: \(mount.logTail)")

        let records = proxy.records().filter { $0.method == "POST" }
        #expect(records.contains { $0.outcome.contains("reset") }, "the proxy lost one answer: \(records.map(\.outcome))")
        #expect(records.contains { $0.status == 503 }, "the proxy refused one request with 503: \(records.map(\.outcome))")
        let requests = server.requests(since: mark)
        let stored = requests.filter { $0.method == "POST" }.flatMap { $0.stored ?? [] }
        let puts = requests.filter { $0.method == "PUT" }.map { String($0.path.split(separator: "/").last ?? "") }
        #expect(Set(stored).count == stored.count, "no file stored twice by bulk requests (the lost answer was settled by looking)")
        #expect(stored.count + puts.count == files.count, "each file sent once: \(stored.count) in bulk, PUT: \(puts.sorted())")
        #expect(puts.contains("f-041.bin"), "the refused file went alone by PUT: \(puts.sorted())")
        #expect(puts.contains("f-062.bin"), "the file the request stopped at went alone by PUT: \(puts.sorted())")
        Self.checkStored(server, folder: "faults", files)
        Self.nothingPending(server)
    }

    @Test("kill -9 while bulk requests are in flight (the server holds each for 2 s, then stores it): after a restart every file is on the server once, intact, at its mtime; no conflict copy of our own upload; nothing pending")
    func killDuringBulk() throws {
        let (source, files) = try Self.sourceTree(60, seed: 14)
        defer { try? FileManager.default.removeItem(at: source) }
        let server = try populatedServer { _ in }
        defer { server.stop() }
        try server.fault(method: "POST", pathContains: "/dav/bulk", action: "delay", count: -1, seconds: 2)
        var mount = try MountedServer(server, options: ["upload_delay=0.5"])
        defer { mount.unmount() }
        let mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("killed")], timeout: 120).status == 0, "cp -a")
        // The settle delay has passed and the uploaders have sent their batches: the server
        // holds them when the daemon dies.
        usleep(1_500_000)
        mount.kill()
        let inFlight = server.requests(since: mark).filter { $0.method == "POST" }
        #expect(inFlight.isEmpty, "no bulk request had been answered before the kill: \(inFlight.count)")
        try server.control("clear", [:])
        sleep(2)  // the held requests finish on the server (they store their files)
        mount = try MountedServer(server)
        #expect(mount.unmount() == 0, "the restarted daemon drains the journal: \(mount.logTail)")
        let stored = server.requests(since: mark).filter { $0.method == "POST" }.flatMap { $0.stored ?? [] }
        #expect(!stored.isEmpty, "the killed daemon's bulk requests stored files")
        Self.checkStored(server, folder: "killed", files)
        Self.nothingPending(server)
    }

    @Test("a server whose bulk endpoint is missing (404): the mount falls back to PUT once, loses nothing; -o bulk=off makes no bulk request")
    func bulkFallback() throws {
        let (source, files) = try Self.sourceTree(40, seed: 13)
        defer { try? FileManager.default.removeItem(at: source) }
        let server = try populatedServer { _ in }
        defer { server.stop() }
        try server.fault(method: "POST", pathContains: "/dav/bulk", status: 404, count: -1)
        var mount = try MountedServer(server)
        var mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("fallback")], timeout: 120).status == 0, "cp -a")
        #expect(mount.unmount() == 0, "unmount drains every upload: \(mount.logTail)")
        var requests = server.requests(since: mark)
        // Each of the 4 uploaders may have sent one before the first refusal came back.
        let refused = requests.filter { $0.method == "POST" }.count
        #expect((1...4).contains(refused), "at most one refused bulk request per uploader, then PUTs: \(refused)")
        #expect(requests.filter { $0.method == "PUT" }.count == files.count, "every file by PUT")
        Self.checkStored(server, folder: "fallback", files)

        try server.control("clear", [:])
        mount = try MountedServer(server, options: ["bulk=off"])
        defer { mount.unmount() }
        mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("off")], timeout: 120).status == 0, "cp -a")
        #expect(mount.unmount() == 0, "unmount drains every upload: \(mount.logTail)")
        requests = server.requests(since: mark)
        #expect(requests.filter { $0.method == "POST" }.isEmpty, "bulk=off: no bulk request")
        let propfinds = requests.filter { $0.method == "PROPFIND" }.count
        #expect(propfinds < files.count, "PUTs are checked by listings, not one PROPFIND each: \(propfinds) PROPFINDs for \(files.count) files")
        Self.checkStored(server, folder: "off", files)
        Self.nothingPending(server)
    }
}
