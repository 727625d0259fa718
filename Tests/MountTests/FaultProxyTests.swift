import Foundation
import TestSupport
import Testing

/// Faults between the daemon and the server (`FaultProxy`), through a real mount: what the
/// network or a middlebox can do that the server's own fault API cannot. Quick enough for CI;
/// the full fault × operation matrix is `scripts/fault-matrix`.
@Suite("Faults between the mount and the server (fault proxy)", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct FaultProxyTests {
    @Test("A GET body cut short (Content-Length promised, connection closed) never shows up as file content")
    func truncatedRead() throws {
        var rng = SeededGenerator(seed: 3)
        let content = (0..<600_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let server = try populatedServer { files in try write(files.appendingPathComponent("docs/photo.raw"), content) }
        defer { server.stop() }
        let proxy = try FaultProxy()
        defer { proxy.stop() }
        let mount = try MountedServer(server, proxy: proxy)
        defer { mount.unmount() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: mount.path("docs")) == ["photo.raw"])

        // The next three GETs of the file stop after 1000 bytes, then one after 0.
        try proxy.setRules([["method": "GET", "path": "photo\\.raw$", "action": "truncate", "after_bytes": 1000, "count": 3],
                            ["method": "GET", "path": "photo\\.raw$", "action": "reset_after_headers", "count": 1]])
        let first = try? Data(contentsOf: URL(fileURLWithPath: mount.path("docs/photo.raw")))
        // (Compared outside #expect, which would print 600,000 bytes on a failure.)
        let firstRight = first == nil || first.map(Array.init) == content
        #expect(firstRight, "the first read is the whole file or an error, never cut short (got \(first?.count ?? -1) bytes)")
        let again = Posix.bytes(mount.path("docs/photo.raw")) == content
        #expect(again, "a later read is the whole file")
        let cut = proxy.records().filter { $0.outcome.hasPrefix("truncated") || $0.outcome.hasPrefix("reset after headers") }
        #expect(cut.count >= 1, "the proxy cut at least one GET short: \(proxy.records().map(\.outcome))")
    }

    @Test("An upload the proxy swallows (201 for a PUT the server never got, or got part of) is caught by the size check and uploaded again")
    func lyingUpload() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("old.bin"), Array(repeating: 1, count: 10)) }
        defer { server.stop() }
        let proxy = try FaultProxy()
        defer { proxy.stop() }
        let mount = try MountedServer(server, arguments: ["--drain-timeout", "30"], proxy: proxy)
        defer { mount.unmount() }
        var rng = SeededGenerator(seed: 5)
        let fresh = (0..<150_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let rewrite = (0..<90_000).map { _ in UInt8.random(in: 0...255, using: &rng) }

        try proxy.setRules([["method": "PUT", "path": "/new\\.bin$", "action": "lie", "count": 1],
                            ["method": "PUT", "path": "/old\\.bin$", "action": "lie", "forward_bytes": 1000, "count": 1]])
        #expect(Posix.create(mount.path("new.bin"), fresh))
        #expect(Posix.create(mount.path("old.bin"), rewrite))
        #expect(mount.unmount() == 0, "the unmount drained both uploads: \(mount.logTail)")

        let puts = proxy.records().filter { $0.method == "PUT" }
        #expect(puts.filter { $0.outcome.hasPrefix("lied") }.count == 2, "both lies were told: \(puts.map(\.outcome))")
        let files = server.filesDir
        let names = (try? FileManager.default.contentsOfDirectory(atPath: files.path)) ?? []
        let freshStored = Posix.bytes(files.appendingPathComponent("new.bin").path) == fresh
        #expect(freshStored, "new.bin stored whole: its 404 on the size check means upload again, not 'folder gone'")
        let rewriteAtName = Posix.bytes(files.appendingPathComponent("old.bin").path) == rewrite
        #expect(rewriteAtName, "old.bin stored whole, not left as the prefix beside a conflict copy: \(names)")
        #expect(names.filter { $0.contains("conflict") }.isEmpty, "no conflict copy of our own broken upload: \(names)")
    }
}
