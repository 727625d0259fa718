import Foundation
import TestSupport
import Testing

/// Ending the daemon with a signal (SIGTERM from systemd or kill, Ctrl-C's SIGINT) while
/// programs still use the mount.
@Suite("Shutdown by signal", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct ShutdownTests {
    /// The pid of the `ncfs mount` this test process started for `mountpoint` (a child of this
    /// process whose command line names exactly that mount point).
    static func daemonPID(_ mountpoint: String) -> pid_t? {
        let me = getpid()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(name),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, pid_t(fields[1]) == me,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if args.first == MountedServer.binary && args.contains("mount") && args.contains(mountpoint) { return pid }
        }
        return nil
    }

    /// Whether `pid` has ended (gone, or a zombie waiting to be reaped).
    static func ended(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return true
        }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }

    /// Files in the state folder's staging folder (there is one state folder per test server).
    static func staging(_ server: TestServer) -> [String] {
        let root = server.dataDir.appendingPathComponent("ncfs")
        var names: [String] = []
        for state in (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [] {
            let folder = root.appendingPathComponent(state).appendingPathComponent("staging")
            names += (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        }
        return names
    }

    @Test("SIGTERM while a writer holds a file open mid-write: the daemon exits 0 within seconds with a shutdown message naming the file, no 'failed to unmount', the partial file neither uploaded nor left in staging; a closed file is uploaded", arguments: [SIGTERM, SIGINT])
    func signalMidWrite(signal: Int32) throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        #expect(Posix.create(mount.path("done.txt"), "complete"))
        // The writer (this test) opens a new file, writes 1 MiB of it and keeps it open.
        // O_CLOEXEC: a process another test spawns meanwhile must not inherit the descriptor,
        // or its exit closes that copy, which the mount sees as a close (a FLUSH) of the file.
        let fd = open(mount.path("partial.bin"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        let chunk = [UInt8](repeating: 7, count: 1 << 20)
        #expect(chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == chunk.count)
        #expect(!Self.staging(server).isEmpty, "the partial file is staged")

        let pid = try #require(Self.daemonPID(mount.mountpoint.path))
        let started = Date()
        kill(pid, signal)
        let deadline = Date().addingTimeInterval(20)
        while !Self.ended(pid) && Date() < deadline { usleep(20_000) }
        let took = Date().timeIntervalSince(started)
        #expect(Self.ended(pid), "the daemon ends although a file is still open on the mount")
        #expect(took < 15, "ended in \(took) s")
        // The writer's descriptor now belongs to a dead mount: its close may fail, nothing hangs.
        close(fd)
        let status = mount.unmount()
        #expect(status == 0, "exit status \(String(describing: status))")

        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(!log.contains("failed to unmount"), "\(log)")
        #expect(!log.contains("Invalid argument"), "\(log)")
        let name = signal == SIGTERM ? "SIGTERM" : "SIGINT"
        #expect(log.contains("\(name) received"), "a shutdown message: \(log)")
        #expect(log.contains("/partial.bin was still open for writing"), "the open file is named: \(log)")
        #expect(log.contains("stopped"), "\(log)")
        #expect(Self.staging(server).isEmpty, "no staging leftover: \(Self.staging(server)); \(log)")
        #expect(!MountedServer.isMounted(mount.mountpoint.path))
        #expect(try String(contentsOf: server.filesDir.appendingPathComponent("done.txt"), encoding: .utf8) == "complete")
        #expect(!FileManager.default.fileExists(atPath: server.filesDir.appendingPathComponent("partial.bin").path))
    }

    @Test("SIGTERM with files reopened for writing after their close: one unchanged since is uploaded and not named; one partly rewritten is named, stays in the journal (exit 9), and its last closed version goes up at the next mount")
    func reopenedFiles() throws {
        let server = try TestServer()
        defer { server.stop() }
        // A long settle delay: both closed files are still pending when the signal comes.
        let mount = try MountedServer(server, options: ["upload_delay=60"])
        defer { mount.unmount() }
        #expect(Posix.create(mount.path("same.txt"), "same"))
        #expect(Posix.create(mount.path("edited.txt"), "version one"))
        let same = open(mount.path("same.txt"), O_WRONLY | O_CLOEXEC)
        let edited = open(mount.path("edited.txt"), O_WRONLY | O_CLOEXEC)
        #expect(same >= 0 && edited >= 0)
        #expect(pwrite(edited, "VERSION", 7, 0) == 7)

        let pid = try #require(Self.daemonPID(mount.mountpoint.path))
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while !Self.ended(pid) && Date() < deadline { usleep(20_000) }
        #expect(Self.ended(pid))
        close(same)
        close(edited)
        #expect(mount.unmount() == 9, "one upload left in the journal")
        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(log.contains("/edited.txt was still open for writing when the mount ended, partly rewritten since its last close"), "\(log)")
        #expect(!log.contains("/same.txt was still open"), "\(log)")
        #expect(!log.contains("failed to unmount"), "\(log)")
        #expect(try String(contentsOf: server.filesDir.appendingPathComponent("same.txt"), encoding: .utf8) == "same")
        #expect(!FileManager.default.fileExists(atPath: server.filesDir.appendingPathComponent("edited.txt").path))

        // The next mount uploads what the journal kept: the version its close recorded (a file
        // this small has its bytes in the journal row).
        let again = try MountedServer(server)
        #expect(again.unmount() == 0, "\(again.logTail)")
        #expect(try String(contentsOf: server.filesDir.appendingPathComponent("edited.txt"), encoding: .utf8) == "version one")
        #expect(Self.staging(server).isEmpty, "\(Self.staging(server))")
    }

    @Test("SIGTERM while an ls waits on a hung server: its request is cancelled, the daemon ends within seconds and the ls fails instead of waiting")
    func signalWhileServerHangs() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("folder/a.txt"), Array("a".utf8)) }
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        try server.fault(method: "PROPFIND", pathContains: "/folder", action: "stall", count: 1, seconds: 90)
        let ls = Process()
        ls.executableURL = URL(fileURLWithPath: "/bin/ls")
        ls.arguments = [mount.path("folder")]
        ls.standardOutput = FileHandle.nullDevice
        ls.standardError = FileHandle.nullDevice
        try ls.run()
        defer { if ls.isRunning { kill(ls.processIdentifier, SIGKILL) }; ls.waitUntilExit() }
        usleep(1_500_000)
        #expect(ls.isRunning, "ls waits for the stalled listing")

        let pid = try #require(Self.daemonPID(mount.mountpoint.path))
        let started = Date()
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while !Self.ended(pid) && Date() < deadline { usleep(20_000) }
        let took = Date().timeIntervalSince(started)
        #expect(Self.ended(pid))
        #expect(took < 6, "ended in \(took) s")
        let lsDeadline = Date().addingTimeInterval(10)
        while ls.isRunning && Date() < lsDeadline { usleep(20_000) }
        #expect(!ls.isRunning && ls.terminationStatus != 0)
        #expect(mount.unmount() == 0)
        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(!log.contains("still running"), "\(log)")
        #expect(log.contains("stopped"), "\(log)")
    }
}
