import Foundation
import TestSupport
import Testing

/// `scripts/mount.fuse.ncfs` and `ncfs mount --background`, the way mount(8) and fstab use
/// them: the helper must return exactly when the filesystem is mounted, or fail with the reason
/// and leave nothing mounted or running.
@Suite("mount(8) helper and --background", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct MountHelperTests {
    static let helper = TestServer.repositoryRoot.appendingPathComponent("scripts/mount.fuse.ncfs").path
    static let installedHelper = "/sbin/mount.fuse.ncfs"

    @Test("mount.fuse.ncfs with mount(8)'s argv returns once mounted; ls works; fusermount3 -u ends the daemon")
    func helperMounts() throws {
        let server = try populatedServer { files in
            try write(files.appendingPathComponent("a.txt"), Array("hello".utf8))
            try write(files.appendingPathComponent("sub/b.txt"), Array("b".utf8))
        }
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }

        // What `mount -t fuse.ncfs URL DIR -o …` passes from an fstab line, fstab-only options included.
        let options = "rw,nosuid,nodev,_netdev,noauto,nofail,user,x-systemd.automount,x-systemd.mount-timeout=30,"
            + "comment=fstab,user=\(server.user),password_file=\(site.passwordFile),poll=1,log=\(site.log)"
        let result = site.run("/bin/sh", [MountHelperTests.helper, server.baseURL, site.mountpoint, "-n", "-o", options])
        #expect(result.status == 0, "\(result.err)")
        #expect(MountedServer.isMounted(site.mountpoint), "mounted when the helper returns: \(site.logText)")
        #expect(run("/bin/ls", [site.mountpoint]).out.split(separator: "\n") == ["a.txt", "incoming", "sub"], "a writable mount shows incoming/ at its root")
        #expect(run("/bin/cat", [site.mountpoint + "/a.txt"]).out == "hello")
        let mountOptions = site.mountEntry?.options ?? []
        #expect(mountOptions.contains("default_permissions") && !mountOptions.contains("allow_other"), "\(mountOptions)")

        // The default cache folder: $XDG_CACHE_HOME/ncfs/<16 hex digits of URL + login>, private.
        let cacheFolders = (try? FileManager.default.contentsOfDirectory(atPath: site.cacheHome + "/ncfs")) ?? []
        #expect(cacheFolders.count == 1 && cacheFolders.first?.count == 16)
        if let folder = cacheFolders.first {
            let mode = try FileManager.default.attributesOfItem(atPath: site.cacheHome + "/ncfs/" + folder)[.posixPermissions] as? Int
            #expect(mode == 0o700)
        }

        let daemons = site.daemons()
        #expect(daemons.count == 1, "one daemon left running: \(daemons)")
        #expect(run("/usr/bin/fusermount3", ["-u", site.mountpoint], timeout: 10).status == 0)
        #expect(site.waitForDaemonsToExit(), "daemon still running after fusermount3 -u")
        #expect(!MountedServer.isMounted(site.mountpoint))
    }

    @Test("real mount -t fuse.ncfs with the helper in /sbin; umount ends the daemon",
          .enabled(if: getuid() == 0, "mount(8) runs helpers from /sbin: needs root to install one there"),
          .enabled(if: !FileManager.default.fileExists(atPath: MountHelperTests.installedHelper),
                   "\(MountHelperTests.installedHelper) already exists: not replacing an installed helper"))
    func realMount() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("a.txt"), Array("hello".utf8)) }
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        try FileManager.default.copyItem(atPath: MountHelperTests.helper, toPath: MountHelperTests.installedHelper)
        defer { try? FileManager.default.removeItem(atPath: MountHelperTests.installedHelper) }

        // mount(8) runs helpers without PATH: the helper takes the built binary from NCFS_BINARY.
        let result = site.run("/usr/bin/mount", ["-t", "fuse.ncfs", server.baseURL, site.mountpoint, "-o",
                                                 "_netdev,user=\(server.user),password_file=\(site.passwordFile),log=\(site.log)"],
                              extraEnvironment: ["NCFS_BINARY": MountedServer.binary])
        #expect(result.status == 0, "\(result.err)")
        #expect(site.mountEntry?.type == "fuse.ncfs", "mounted as fuse.ncfs: \(site.logText)")
        #expect(run("/bin/cat", [site.mountpoint + "/a.txt"]).out == "hello")
        #expect(site.daemons().count == 1)
        #expect(run("/usr/bin/umount", [site.mountpoint], timeout: 10).status == 0)
        #expect(site.waitForDaemonsToExit(), "daemon still running after umount")
    }

    @Test("bad -o options are refused before anything starts; a password in -o is never echoed",
          arguments: ["password=hunter2-secret", "cache_size=12Q", "whole_file_max=big", "poll=soon", "walk_ahead=many", "close=sometimes"])
    func refusedOption(option: String) throws {
        let site = try HelperSite(server: nil)
        defer { site.cleanUp() }
        let result = site.run("/bin/sh", [MountHelperTests.helper, "http://127.0.0.1:9/remote.php/dav/files/alice/", site.mountpoint,
                                          "-o", "user=alice,password_file=\(site.passwordFile),\(option)"])
        #expect(result.status == 2, "usage error: \(result.err)")
        let key = String(option.prefix { $0 != "=" })
        #expect(result.err.contains("-o \(key):"), "\(result.err)")
        if key == "password" {
            #expect(result.err.contains("password_file=PATH") && !result.err.contains("hunter2"), "\(result.err)")
        }
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
    }

    @Test("a password file other users can read is refused, nothing mounted")
    func openPasswordFile() throws {
        let site = try HelperSite(server: nil)
        defer { site.cleanUp() }
        #expect(chmod(site.passwordFile, 0o644) == 0)
        let result = site.run("/bin/sh", [MountHelperTests.helper, "http://127.0.0.1:9/remote.php/dav/files/alice/", site.mountpoint,
                                          "-o", "user=alice,password_file=\(site.passwordFile)"])
        #expect(result.status == 3, "configuration error: \(result.err)")
        #expect(result.err.contains("readable by other users") && result.err.contains("chmod 600"), "\(result.err)")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
    }

    @Test("a cache folder other users can enter is refused (it would hold copies of the files)")
    func openCacheFolder() throws {
        let site = try HelperSite(server: nil)
        defer { site.cleanUp() }
        let folder = site.folder.appendingPathComponent("shared-cache").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let result = site.run("/bin/sh", [MountHelperTests.helper, "http://127.0.0.1:9/remote.php/dav/files/alice/", site.mountpoint,
                                          "-o", "user=alice,password_file=\(site.passwordFile),cache_dir=\(folder)"])
        #expect(result.status == 3, "configuration error: \(result.err)")
        #expect(result.err.contains("chmod 700"), "\(result.err)")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
    }

    @Test("--background against an unreachable server fails promptly with the daemon's error, nothing left")
    func unreachable() throws {
        let server = try TestServer()
        server.stop()  // its port is closed now
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        let started = Date()
        let result = site.run(MountedServer.binary, ["mount", "--background", server.baseURL, site.mountpoint,
                                                     "-o", "user=\(server.user),password_file=\(site.passwordFile)"])
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status == 7, "network error status: \(result.err)")
        #expect(result.err.contains("connect"), "the daemon's error reaches the caller: \(result.err)")
        #expect(seconds < 20, "took \(seconds) s")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
    }

    @Test("--background with a wrong app password exits 4 with the explanation, nothing left")
    func wrongPassword() throws {
        let server = try TestServer()
        defer { server.stop() }
        let site = try HelperSite(server: server, password: "not-" + server.password)
        defer { site.cleanUp() }
        let result = site.run(MountedServer.binary, ["mount", "--background", server.baseURL, site.mountpoint,
                                                     "-o", "user=\(server.user),password_file=\(site.passwordFile)"])
        #expect(result.status == 4, "\(result.err)")
        #expect(result.err.contains("401") && result.err.contains("app password"), "\(result.err)")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
    }
}

/// A mountpoint, a private password file, config and cache homes and a log in one temporary
/// folder, and the environment to run the helper in: the built `ncfs` first on PATH, none of
/// the caller's NEXTCLOUD_* settings or systemd variables. `cleanUp()` unmounts and ends any
/// daemon still serving the mountpoint (by PID), then removes the folder.
final class HelperSite: Sendable {
    let folder: URL
    let mountpoint: String
    let passwordFile: String
    let log: String
    let cacheHome: String
    let environment: [String: String]

    init(server: TestServer?, password: String? = nil) throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-helper-\(UUID().uuidString.prefix(8))")
        mountpoint = folder.appendingPathComponent("mnt").path
        passwordFile = folder.appendingPathComponent("app-password").path
        log = folder.appendingPathComponent("ncfs.log").path
        cacheHome = folder.appendingPathComponent("cache").path
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: passwordFile, contents: Data((password ?? server?.password ?? "x").utf8),
                                           attributes: [.posixPermissions: 0o600])
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("NEXTCLOUD_") }
        for name in ["CACHE_DIRECTORY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"] { env[name] = nil }
        env["XDG_CONFIG_HOME"] = folder.path
        env["XDG_CACHE_HOME"] = cacheHome
        env["XDG_STATE_HOME"] = folder.appendingPathComponent("state").path
        let binaries = URL(fileURLWithPath: MountedServer.binary).deletingLastPathComponent().path
        env["PATH"] = binaries + ":" + (env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        environment = env
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// This mountpoint's line in /proc/self/mountinfo: filesystem type and superblock options.
    var mountEntry: (type: String, options: [String])? {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4] == Substring(mountpoint),
                  let dash = fields.firstIndex(of: "-"), fields.count > dash + 3 else { continue }
            return (String(fields[dash + 1]), fields[dash + 3].split(separator: ",").map(String.init))
        }
        return nil
    }

    /// Runs a program in this site's environment with a time limit; stdout and stderr go to
    /// files, so a daemon that kept them open could not make this wait.
    func run(_ program: String, _ args: [String], extraEnvironment: [String: String] = [:],
             timeout: Double = 60) -> (status: Int32, out: String, err: String) {
        let out = folder.appendingPathComponent("run-\(UUID().uuidString).out"), err = out.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        p.environment = environment.merging(extraEnvironment) { $1 }
        do {
            p.standardOutput = try FileHandle(forWritingTo: out)
            p.standardError = try FileHandle(forWritingTo: err)
            try p.run()
        } catch {
            return (-1, "", "\(error)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        func text(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
        return (p.terminationStatus, text(out), text(err))
    }

    /// Live `ncfs mount` processes serving this mountpoint (exited ones linger as zombies when
    /// nothing reaps orphans: they do not count).
    func daemons() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { name -> pid_t? in
            guard let pid = pid_t(name),
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let state = stat.split(separator: ")").last?.split(separator: " ").first, state != "Z" else { return nil }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard args.first?.hasSuffix("/ncfs") == true, args.dropFirst().first == "mount", args.contains(mountpoint) else { return nil }
            return pid
        }
    }

    func waitForDaemonsToExit(seconds: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !daemons().isEmpty && Date() < deadline { usleep(50_000) }
        return daemons().isEmpty
    }

    func cleanUp() {
        if MountedServer.isMounted(mountpoint) { _ = run("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 10) }
        if !waitForDaemonsToExit(seconds: 5) {
            for pid in daemons() { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: folder)
    }
}
