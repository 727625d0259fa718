import Foundation
import TestSupport
import Testing

/// Write-back of files above the chunk threshold (10 MiB): chunked upload v2 where the server
/// offers it, one plain PUT where it does not (a generic WebDAV server, even behind a
/// Nextcloud-like URL).
@Suite("Large writes: chunked where offered, PUT on generic WebDAV servers", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct GenericServerWriteTests {
    /// 12 MiB of seeded random bytes.
    static func content() -> [UInt8] {
        var rng = SeededGenerator(seed: 15)
        var words = [UInt64](repeating: 0, count: (12 << 20) / 8)
        for i in words.indices { words[i] = rng.next() }
        return words.withUnsafeBytes { Array($0) }
    }

    @Test("generic server: a 12 MiB file written through the mount is on the server byte for byte after the unmount, sent with one PUT, no chunked upload, no failure")
    func genericServerGetsAPut() throws {
        let server = try TestServer(arguments: ["--generic"])
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        let data = Self.content()
        let mark = server.mark()
        #expect(Posix.create(mount.path("big.bin"), data))
        #expect(mount.unmount() == 0, "clean exit, the upload done: \(mount.logTail)")
        let stored = Posix.bytes(server.filesDir.appendingPathComponent("big.bin").path)
        #expect(stored.count == data.count && stored == data)
        let requests = server.requests(since: mark)
        #expect(!requests.contains { $0.path.contains("/uploads/") }, "no chunked upload tried: \(requests.map { "\($0.method) \($0.path)" })")
        #expect(requests.filter { $0.method == "PUT" && $0.path.hasSuffix("/big.bin") && $0.status < 300 }.count == 1)
        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(!log.contains("upload of /big.bin failed"), "\(log)")
    }

    @Test("capabilities unreadable for now and no upload collection on the server: the chunked upload gives way to one PUT, not a permanent failure")
    func missingUploadCollectionFallsBackToPut() throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        // The capabilities answer 503 (a transient failure: chunks are tried), and the upload
        // collection cannot be made.
        try server.fault(method: "GET", pathContains: "/ocs/", status: 503, count: 20)
        try server.fault(method: "MKCOL", pathContains: "/uploads/", status: 404, count: 20)
        let data = Self.content()
        let mark = server.mark()
        #expect(Posix.create(mount.path("big.bin"), data))
        #expect(mount.unmount() == 0, "clean exit, the upload done: \(mount.logTail)")
        #expect(Posix.bytes(server.filesDir.appendingPathComponent("big.bin").path) == data)
        let requests = server.requests(since: mark)
        #expect(requests.contains { $0.method == "MKCOL" && $0.path.contains("/uploads/") && $0.status == 404 })
        #expect(requests.filter { $0.method == "PUT" && $0.path.hasSuffix("/files/alice/big.bin") && $0.status < 300 }.count == 1,
                "\(requests.map { "\($0.method) \($0.path) \($0.status)" })")
        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(!log.contains("upload of /big.bin failed"), "\(log)")
    }

    @Test("Nextcloud server: the same file goes up in chunks (the capabilities offer chunking)")
    func nextcloudServerGetsChunks() throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        let data = Self.content()
        let mark = server.mark()
        #expect(Posix.create(mount.path("big.bin"), data))
        #expect(mount.unmount() == 0, "clean exit, the upload done: \(mount.logTail)")
        let stored = Posix.bytes(server.filesDir.appendingPathComponent("big.bin").path)
        #expect(stored == data)
        let requests = server.requests(since: mark)
        #expect(requests.contains { $0.method == "MOVE" && $0.path.contains("/uploads/") && $0.path.hasSuffix("/.file") && $0.status < 300 },
                "\(requests.map { "\($0.method) \($0.path)" })")
        #expect(!requests.contains { $0.method == "PUT" && $0.path.hasSuffix("/files/alice/big.bin") })
    }
}
