import Foundation
import TestSupport
import Testing
import WebDAV

@Suite("Through a real FUSE mount", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct MountTests {
    @Test("ls -l of a 1000-file folder: 1 PROPFIND cold, 0 requests warm; find+stat of a tree warm: 0")
    func listing() throws {
        let server = try populatedServer { files in
            for i in 0..<1000 { try write(files.appendingPathComponent("big/f\(i).txt"), Array(repeating: 7, count: i)) }
            for a in 0..<3 { for b in 0..<3 { for c in 0..<3 {
                try write(files.appendingPathComponent("tree/a\(a)/b\(b)/c\(c).bin"), Array(repeating: 1, count: 100 * (a + b + c) + 1))
            } } }
        }
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { #expect(mount.unmount() == 0, "clean exit after fusermount3 -u") }

        let cold = server.mark()
        let ls = run("/bin/ls", ["-l", mount.path("big")])
        #expect(ls.status == 0 && ls.out.split(separator: "\n").count == 1001)
        let coldRequests = server.requests(since: cold)
        #expect(coldRequests.count == 1 && coldRequests.first?.method == "PROPFIND" && coldRequests.first?.depth == "1",
                "\(coldRequests.map { "\($0.method) \($0.path) \($0.depth ?? "-")" })")
        let warm = server.mark()
        #expect(run("/bin/ls", ["-l", mount.path("big")]).status == 0)
        #expect(server.requests(since: warm).count == 0)

        let files = run("/usr/bin/find", [mount.path("tree"), "-type", "f"]).out.split(separator: "\n").map(String.init)
        #expect(files.count == 27)
        let warmTree = server.mark()
        #expect(run("/usr/bin/find", [mount.path("tree")]).status == 0)
        #expect(run("/usr/bin/stat", ["-c", "%s"] + files).status == 0)
        #expect(server.requests(since: warmTree).count == 0)

        // Folder size = oc:size; du -s -B1 = the files' allocated bytes, folders not counted.
        let client = try server.client()
        let ocSize = try client.stat("tree").size
        #expect(run("/usr/bin/stat", ["-c", "%s", mount.path("tree")]).out.trimmingCharacters(in: .whitespacesAndNewlines) == ocSize.map(String.init))
        var allocated: Int64 = 0
        for a in 0..<3 { for b in 0..<3 { for c in 0..<3 { allocated += (Int64(100 * (a + b + c) + 1) + 511) / 512 * 512 } } }
        let du = run("/usr/bin/du", ["-s", "-B1", mount.path("tree")]).out.split(separator: "\t").first.map(String.init)
        #expect(du == String(allocated))
    }

    @Test("200 MB file: sha256 through the mount equals the source; random reads; throughput vs curl")
    func bigRead() throws {
        let size = 200 << 20
        let server = try populatedServer { files in
            let url = files.appendingPathComponent("large.bin")
            try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
            _ = run("/bin/sh", ["-c", "head -c \(size) /dev/urandom > '\(url.path)'"], timeout: 60)
        }
        defer { server.stop() }
        let source = server.filesDir.appendingPathComponent("large.bin").path
        let expected = run("/usr/bin/sha256sum", [source]).out.prefix(64)
        let mount = try MountedServer(server)
        defer { mount.unmount() }

        var t = Date()
        let curl = run("/usr/bin/curl", ["-sf", "-u", "\(server.user):\(server.password)", "-o", "/dev/null", server.baseURL + "large.bin"], timeout: 120)
        let curlSeconds = Date().timeIntervalSince(t)
        #expect(curl.status == 0)
        t = Date()
        let copy = run("/bin/dd", ["if=" + mount.path("large.bin"), "of=/dev/null", "bs=1M"], timeout: 120)
        let mountSeconds = Date().timeIntervalSince(t)
        #expect(copy.status == 0)
        print(String(format: "200 MB read: curl %.2f s (%.0f MB/s), mount %.2f s (%.0f MB/s), ratio mount/curl throughput %.2f",
                     curlSeconds, 200 / curlSeconds, mountSeconds, 200 / mountSeconds, curlSeconds / mountSeconds))
        #expect(run("/usr/bin/sha256sum", [mount.path("large.bin")], timeout: 120).out.prefix(64) == expected)

        let file = try FileHandle(forReadingFrom: URL(fileURLWithPath: source))
        defer { try? file.close() }
        let through = try FileHandle(forReadingFrom: URL(fileURLWithPath: mount.path("large.bin")))
        defer { try? through.close() }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let offset = UInt64.random(in: 0..<UInt64(size - 70_000), using: &rng)
            let count = Int.random(in: 1...70_000, using: &rng)
            try file.seek(toOffset: offset)
            try through.seek(toOffset: offset)
            #expect(try through.read(upToCount: count) == file.read(upToCount: count))
        }
    }

    @Test("a change made through the client appears within poll + 1 s; xattrs via getfattr")
    func changeAndXattrs() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("w/old.txt"), Array("old".utf8)) }
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["poll=1", "ro"])
        defer { mount.unmount() }
        #expect(run("/bin/cat", [mount.path("w/old.txt")]).out == "old")
        #expect(run("/usr/bin/stat", [mount.path("w/new.txt")]).status != 0)

        let client = try server.client()
        _ = try client.put("w/new.txt", body: .bytes(Array("fresh".utf8)))
        _ = try client.put("w/old.txt", body: .bytes(Array("changed".utf8)))
        let changed = Date()
        var seen = false
        while Date().timeIntervalSince(changed) < 2.0 {
            if run("/bin/cat", [mount.path("w/new.txt")]).out == "fresh" && run("/bin/cat", [mount.path("w/old.txt")]).out == "changed" {
                seen = true
                break
            }
            usleep(100_000)
        }
        #expect(seen, "change not visible within poll (1 s) + 1 s")

        let remote = try client.stat("w/new.txt")
        let dump = run("/usr/bin/getfattr", ["-d", "--absolute-names", mount.path("w/new.txt")]).out
        #expect(dump.contains("user.nextcloud.fileid=\"\(remote.fileID!)\""))
        #expect(dump.contains("user.nextcloud.etag=\"\(remote.etag!)\""))
        #expect(dump.contains("user.nextcloud.size=\"5\""))
        #expect(run("/usr/bin/setfattr", ["-n", "user.nextcloud.etag", "-v", "x", mount.path("w/new.txt")]).status != 0)
        #expect(run("/usr/bin/touch", [mount.path("w/created")]).status != 0, "read-only mount")
    }

    @Test("second read of an unchanged file costs no GET; server down: EIO within read_timeout, cached ls answers; server back: reads work")
    func outage() throws {
        var bytes = [UInt8](repeating: 0, count: 24 << 20)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 13 &+ i >> 12) }
        let content = bytes
        let server = try populatedServer { files in
            try write(files.appendingPathComponent("o/big.bin"), content)
            try write(files.appendingPathComponent("o/small.txt"), Array("small".utf8))
        }
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["read_timeout=3"])
        defer { mount.unmount() }

        #expect(run("/bin/cat", [mount.path("o/small.txt")]).out == "small")
        // Drop the kernel's page cache (root only) so the second read reaches ncfs and has to
        // be answered by its content cache rather than by the kernel.
        try? "1".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
        let mark = server.mark()
        #expect(run("/bin/cat", [mount.path("o/small.txt")]).out == "small")
        #expect(!server.requests(since: mark).contains { $0.method == "GET" }, "second read served from the content cache")

        // The first 64 KiB through the mount, then the server goes away.
        let head = run("/bin/sh", ["-c", "dd if='\(mount.path("o/big.bin"))' bs=65536 count=1 2>/dev/null | sha256sum"])
        #expect(head.out.prefix(64) == sha256(Array(content[0..<65536])))
        server.stop()
        let started = Date()
        let failed = run("/bin/dd", ["if=" + mount.path("o/big.bin"), "of=/dev/null", "bs=65536", "skip=320", "count=1"], timeout: 30)
        let elapsed = Date().timeIntervalSince(started)
        #expect(failed.status != 0, "a read with the server down must fail, not return zeros")
        #expect(elapsed < 3 + 5, "EIO within read_timeout (3 s) plus slack, took \(elapsed) s")
        #expect(run("/bin/ls", [mount.path("o")]).out.split(separator: "\n").sorted() == ["big.bin", "small.txt"], "cached listing answers")

        try server.start()
        let back = run("/bin/sh", ["-c", "dd if='\(mount.path("o/big.bin"))' bs=65536 skip=320 count=1 2>/dev/null | sha256sum"])
        #expect(back.out.prefix(64) == sha256(Array(content[(320 << 16)..<(321 << 16)])), "reads work again without remounting")
    }

    @Test("ncfs du of a tree costs 1 request and equals the server's oc:size")
    func duOneRequest() throws {
        let server = try populatedServer { files in
            for a in 0..<4 { for b in 0..<5 { try write(files.appendingPathComponent("t/a\(a)/b\(b).bin"), Array(repeating: 1, count: 1000 * (a + 1) + b)) } }
        }
        defer { server.stop() }
        let mark = server.mark()
        let du = runNCFS(server, ["du", "--url", server.baseURL, "--user", server.user, "t"])
        #expect(du.status == 0)
        let requests = server.requests(since: mark)
        #expect(requests.count == 1 && requests.first?.method == "PROPFIND", "\(requests.map { "\($0.method) \($0.path)" })")
        let expected = try server.client().stat("t").size!
        #expect(du.out.contains(String(expected)), "\(du.out)")
    }
}

/// The built `ncfs` with the server's password in the environment.
func runNCFS(_ server: any DAVServer, _ args: [String]) -> (status: Int32, out: String) {
    let home = server.dataDir.path
    let script = "NEXTCLOUD_WEBDAV_APP_PASSWORD='\(server.password)' XDG_CONFIG_HOME='\(home)' XDG_CACHE_HOME='\(home)' XDG_STATE_HOME='\(home)' exec \"$0\" \"$@\""
    return run("/bin/sh", ["-c", script, MountedServer.binary] + args)
}

/// Lower-case hex SHA-256 (via sha256sum, which the tests use for files too).
func sha256(_ bytes: [UInt8]) -> Substring {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-sha-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    _ = FileManager.default.createFile(atPath: file.path, contents: Data(bytes))
    return run("/usr/bin/sha256sum", [file.path]).out.prefix(64)
}
