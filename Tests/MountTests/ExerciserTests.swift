import Foundation
import TestSupport
import Testing

/// An fsx-style exerciser: a long seeded sequence of writes, truncates, reads, renames and
/// unlinks applied to the mount and to a local folder alike, compared byte for byte as it
/// goes, after the uploads drained, and after a remount with an empty cache.
///
/// `NCFS_FSX_OPS` sets the length (default 1500 in CI; run with 100000 for the nightly
/// mode), `NCFS_FSX_SEED` the seed (default 1) so a failure can be replayed.
@Suite("fsx-style exerciser through a real FUSE mount", .serialized, .timeLimit(.minutes(30)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct ExerciserTests {
    static var operations: Int { ProcessInfo.processInfo.environment["NCFS_FSX_OPS"].flatMap(Int.init) ?? 1500 }
    static var seed: UInt64 { ProcessInfo.processInfo.environment["NCFS_FSX_SEED"].flatMap(UInt64.init) ?? 1 }
    /// `NCFS_FSX_PARANOID=1`: compare every file after every operation (slow; finds the first
    /// operation after which the mount differs).
    static var paranoid: Bool { ProcessInfo.processInfo.environment["NCFS_FSX_PARANOID"] != nil }

    @Test("random write/truncate/read/rename/unlink sequence matches a local folder, also after a remount with an empty cache")
    func exercise() throws {
        let server = try populatedServer { _ in }
        defer { server.stop() }
        try Self.exercise(server, operations: Self.operations, seed: Self.seed,
                          serverETag: { name in (try? server.client().stat(name))?.etag ?? "-" },
                          keepLogs: { mount in Self.keepLogs(server, mount) })
    }

    /// The exercise on `server` (the emulator here, a real Nextcloud in RealServerTests).
    static func exercise(_ server: any DAVServer, operations: Int, seed: UInt64, serverETag: (String) -> String,
                         keepLogs: (MountedServer) -> Void) throws {
        var mount = try MountedServer(server, options: ["upload_delay=0.2"])
        defer { mount.unmount() }
        let reference = server.dataDir.appendingPathComponent("reference")
        try FileManager.default.createDirectory(at: reference, withIntermediateDirectories: true)
        let names = (0..<6).map { "f\($0).bin" }
        var rng = SeededGenerator(seed: seed)
        var log: [String] = []

        func both(_ name: String) -> (mounted: String, local: String) {
            (mount.path(name), reference.appendingPathComponent(name).path)
        }
        var issues = 0
        func hadIssue() -> Bool { issues > 0 }
        func check(_ context: String) {
            for name in names {
                let (m, l) = both(name)
                let local = FileManager.default.fileExists(atPath: l) ? Posix.bytes(l) : nil
                let mounted = FileManager.default.fileExists(atPath: m) ? Posix.bytes(m) : nil
                if let difference = Self.difference(mounted, local) {
                    issues += 1
                    let shown = run("/usr/bin/getfattr", ["-n", "user.nextcloud.etag", "--only-values", m]).out
                    let actual = serverETag(name)
                    Issue.record("etag shown \(shown), server \(actual)")
                    Issue.record("\(context): \(name): \(difference); last ops: \(log.suffix(12)); daemon: \(mount.logTail)")
                }
            }
        }

        for step in 0..<operations {
            let name = names[Int.random(in: 0..<names.count, using: &rng)]
            let (m, l) = both(name)
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<45:
                let size = Posix.size(l) ?? 0
                let offset = Int.random(in: 0...(size + 65536), using: &rng)
                let bytes = (0..<Int.random(in: 1...65536, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                log.append("write \(name) @\(offset)+\(bytes.count)")
                for path in [m, l] { #expect(Posix.pwrite(path, bytes, at: offset), "\(log.last!)") }
            case 45..<60:
                let length = Int.random(in: 0...262_144, using: &rng)
                log.append("truncate \(name) \(length)")
                if Posix.size(l) == nil {
                    #expect(Posix.create(l, []))
                    #expect(Posix.create(m, []), "\(log.last!): errno \(errno)")
                }
                #expect(truncate(l, off_t(length)) == 0)
                #expect(truncate(m, off_t(length)) == 0, "\(log.last!): errno \(errno)")
            case 60..<80:
                guard let size = Posix.size(l), size > 0 else { continue }
                let offset = Int.random(in: 0..<size, using: &rng), count = Int.random(in: 1...131_072, using: &rng)
                log.append("read \(name) @\(offset)+\(count)")
                if let difference = Self.difference(Posix.pread(m, offset: offset, count: count), Posix.pread(l, offset: offset, count: count)) {
                    keepLogs(mount)
                    if let folder = ProcessInfo.processInfo.environment["NCFS_FSX_KEEP"] {
                        try? log.joined(separator: "\n").write(toFile: folder + "/ops.txt", atomically: true, encoding: .utf8)
                    }
                    Issue.record("step \(step): \(log.last!): \(difference); last ops: \(log.suffix(12)); last ops on \(name): \(log.filter { $0.contains(name) }.suffix(12)); daemon: \(mount.logTail)")
                    return
                }
            case 80..<90:
                let target = names[Int.random(in: 0..<names.count, using: &rng)]
                guard target != name, Posix.size(l) != nil else { continue }
                let (tm, tl) = both(target)
                log.append("rename \(name) → \(target)")
                #expect(rename(l, tl) == 0)
                #expect(rename(m, tm) == 0, "\(log.last!): errno \(errno)")
            case 90..<95:
                guard Posix.size(l) != nil else { continue }
                log.append("unlink \(name)")
                #expect(unlink(l) == 0)
                #expect(unlink(m) == 0, "\(log.last!): errno \(errno)")
            default:
                guard Posix.size(l) != nil else { continue }
                log.append("fsync \(name)")
                let fd = open(m, O_RDWR)
                #expect(fd >= 0 && fsync(fd) == 0, "\(log.last!): errno \(errno)")
                close(fd)
            }
            if step % 250 == 249 || Self.paranoid { check("after step \(step) (\(log.last ?? "-"))") }
            if Self.paranoid && hadIssue() { keepLogs(mount); return }
        }
        check("at the end")
        #expect(mount.unmount() == 0, "unmount drains every upload")

        // Everything from the server alone: no staging, no content cache.
        try? FileManager.default.removeItem(at: server.dataDir.appendingPathComponent("ncfs"))
        mount = try MountedServer(server)
        check("after a remount with an empty cache")
    }
}

extension ExerciserTests {
    /// Copies the server's request log and the daemon's log to $NCFS_FSX_KEEP (if set) for
    /// a failure's post-mortem.
    static func keepLogs(_ server: TestServer, _ mount: MountedServer) {
        guard let folder = ProcessInfo.processInfo.environment["NCFS_FSX_KEEP"] else { return }
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for file in [server.logFile, mount.log, server.filesDir, server.dataDir.appendingPathComponent("reference")] {
            let target = URL(fileURLWithPath: folder).appendingPathComponent(file.lastPathComponent)
            try? FileManager.default.removeItem(at: target)
            try? FileManager.default.copyItem(at: file, to: target)
        }
    }

    /// Where two byte strings (mount, local) first differ, or nil when equal.
    static func difference(_ mounted: [UInt8]?, _ local: [UInt8]?) -> String? {
        guard mounted != local else { return nil }
        guard let mounted, let local else { return "exists on \(mounted == nil ? "local only" : "mount only")" }
        let common = min(mounted.count, local.count)
        let first = (0..<common).first { mounted[$0] != local[$0] } ?? common
        return "mount has \(mounted.count) bytes, local \(local.count); first difference at +\(first)"
    }
}

extension Posix {
    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// Writes `bytes` at `offset`, creating the file if needed.
    static func pwrite(_ path: String, _ bytes: [UInt8], at offset: Int) -> Bool {
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        guard fd >= 0 else { return false }
        let written = bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        return close(fd) == 0 && written == bytes.count
    }

    static func pread(_ path: String, offset: Int, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n < 0 ? nil : Array(buffer.prefix(n))
    }
}
