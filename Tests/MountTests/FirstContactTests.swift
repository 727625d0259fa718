import Foundation
import TestSupport
import Testing

/// What a new user meets first (issue 15): one daemon per state folder, the mount point
/// checked, a wrong URL explained, the ready line, no empty folders left by a failed mount,
/// misspelt config keys, and `incoming/` holding names to the server's rules.
@Suite("First contact: state lock, mount point, wrong URL, config keys, incoming/ names", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct FirstContactTests {
    // MARK: One daemon per state folder

    @Test("a second mount on the same state folder is refused, naming the first; the first keeps working; status works")
    func secondDaemonRefused() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("a.txt"), Array("hello".utf8)) }
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        let second = site.folder.appendingPathComponent("mnt2").path, third = site.folder.appendingPathComponent("mnt3").path
        for folder in [second, third] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        defer { for folder in [second, third] { FirstContactTests.forceUnmount(folder) } }
        let connection = ["--url", server.baseURL, "--user", server.user, "--password-file", site.passwordFile]

        let first = site.run(MountedServer.binary, ["mount", "--background"] + connection + [site.mountpoint])
        #expect(first.status == 0, "\(first.err)")
        let pid = try #require(site.daemons().first, "the first daemon runs")

        // Same URL, login and XDG folders, another mount point: in the background (the message
        // travels from the daemon through its parent) and in the foreground.
        for (mountpoint, mode) in [(second, ["--background"]), (third, [])] {
            let refused = site.run(MountedServer.binary, ["mount"] + mode + connection + [mountpoint], timeout: 30)
            #expect(refused.status == 1, "\(mode): refused with status 1: \(refused.err)")
            #expect(refused.err.contains("pid \(pid)") && refused.err.contains("mounted on \(site.mountpoint)"),
                    "\(mode): names the running daemon: \(refused.err)")
            #expect(refused.err.contains("--state-dir"), "\(mode): says how to run two: \(refused.err)")
            #expect(!MountedServer.isMounted(mountpoint), "\(mode): nothing mounted on \(mountpoint)")
        }

        // The first mount is untouched and still writes; read-only commands work beside it.
        #expect(run("/bin/cat", [site.mountpoint + "/a.txt"]).out == "hello")
        #expect(Posix.create(site.mountpoint + "/b.txt", "written after the refusal"))
        let status = site.run(MountedServer.binary, ["status", "--url", server.baseURL, "--user", server.user])
        #expect(status.status == 0, "ncfs status beside the daemon: \(status.err)")
        let items = site.run(MountedServer.binary, ["items", "--url", server.baseURL, "--user", server.user])
        #expect(items.status == 0, "ncfs items beside the daemon: \(items.err)")
        #expect(site.daemons() == [pid])

        // The lock ends with the daemon, however it ends: after kill -9 the next mount comes up.
        kill(pid, SIGKILL)
        #expect(site.waitForDaemonsToExit())
        _ = run("/usr/bin/fusermount3", ["-u", "-z", site.mountpoint], timeout: 10)
        let again = site.run(MountedServer.binary, ["mount", "--background"] + connection + [second])
        #expect(again.status == 0, "a mount after the holder was killed: \(again.err)")
        #expect(MountedServer.isMounted(second))
        #expect(run("/bin/cat", [second + "/b.txt"]).out == "written after the refusal", "the first mount's upload resumed")
        #expect(run("/usr/bin/fusermount3", ["-u", second], timeout: 10).status == 0)
        let deadline = Date().addingTimeInterval(60)
        while !FirstContactTests.daemons(serving: second).isEmpty && Date() < deadline { usleep(50_000) }
        #expect(FirstContactTests.daemons(serving: second).isEmpty, "the daemon ended after unmount")
    }

    // MARK: The mount point

    @Test("a missing mount point, a file, and a non-empty folder are refused with the reason; -o nonempty mounts over one")
    func mountpointChecked() throws {
        let server = try TestServer()
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        let connection = ["--url", server.baseURL, "--user", server.user, "--password-file", site.passwordFile]
        let missing = site.folder.appendingPathComponent("no-such-folder").path
        let file = site.passwordFile  // the case the issue met: a password file as mount point
        defer { for path in [missing, file] { FirstContactTests.forceUnmount(path) } }

        for mode in [["--background"], []] {
            let noFolder = site.run(MountedServer.binary, ["mount"] + mode + connection + [missing], timeout: 30)
            #expect(noFolder.status == 2 && noFolder.err.contains("\(missing) does not exist"), "\(mode): \(noFolder.err)")
            #expect(!FileManager.default.fileExists(atPath: missing), "\(mode): not created")

            let notFolder = site.run(MountedServer.binary, ["mount"] + mode + connection + [file], timeout: 30)
            #expect(notFolder.status == 2 && notFolder.err.contains("\(file) is a file"), "\(mode): \(notFolder.err)")
            #expect(!MountedServer.isMounted(file), "\(mode): nothing mounted on the file")
        }

        try Data("mine".utf8).write(to: URL(fileURLWithPath: site.mountpoint + "/.hidden"))
        let nonEmpty = site.run(MountedServer.binary, ["mount", "--background"] + connection + [site.mountpoint])
        #expect(nonEmpty.status == 2, "\(nonEmpty.err)")
        #expect(nonEmpty.err.contains("not empty") && nonEmpty.err.contains(".hidden") && nonEmpty.err.contains("-o nonempty"),
                "\(nonEmpty.err)")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)

        let over = site.run(MountedServer.binary, ["mount", "--background"] + connection + [site.mountpoint, "-o", "nonempty"])
        #expect(over.status == 0, "-o nonempty mounts: \(over.err)")
        #expect(MountedServer.isMounted(site.mountpoint))
        #expect(run("/usr/bin/fusermount3", ["-u", site.mountpoint], timeout: 10).status == 0)
        #expect(site.waitForDaemonsToExit())
        #expect((try? String(contentsOfFile: site.mountpoint + "/.hidden", encoding: .utf8)) == "mine", "hidden, never touched")
    }

    // MARK: A wrong URL, the ready line, no folders left behind

    @Test("a URL that is no WebDAV folder: says so, names ncfs doctor, and leaves no state or cache folder behind",
          arguments: [["--background"], []])
    func wrongURL(mode: [String]) throws {
        let server = try TestServer()
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        let stateHome = site.folder.appendingPathComponent("state").path
        #expect(!FileManager.default.fileExists(atPath: stateHome) && !FileManager.default.fileExists(atPath: site.cacheHome))

        let url = server.origin + "/remote.php/dav/files/\(server.user)/no-such-folder/"
        let result = site.run(MountedServer.binary, ["mount"] + mode + ["--url", url, "--user", server.user,
                                                                        "--password-file", site.passwordFile, site.mountpoint], timeout: 60)
        #expect(result.status == 5, "not found: \(result.err)")
        #expect(result.err.contains("does not point at a WebDAV folder") && result.err.contains("/remote.php/dav/files/USER/"),
                "says what is wrong: \(result.err)")
        #expect(result.err.contains("ncfs doctor"), "names ncfs doctor: \(result.err)")
        #expect(!MountedServer.isMounted(site.mountpoint))
        #expect(site.daemons().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: stateHome), "state folders it created are gone: \(FirstContactTests.tree(stateHome))")
        #expect(!FileManager.default.fileExists(atPath: site.cacheHome), "cache folders it created are gone: \(FirstContactTests.tree(site.cacheHome))")
    }

    @Test("a failed mount keeps folders it did not create")
    func failedMountKeepsExistingFolders() throws {
        let server = try TestServer()
        defer { server.stop() }
        let site = try HelperSite(server: server)
        defer { site.cleanUp() }
        let state = site.folder.appendingPathComponent("my-state").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let url = server.origin + "/remote.php/dav/files/\(server.user)/no-such-folder/"
        let result = site.run(MountedServer.binary, ["mount", "--url", url, "--user", server.user, "--password-file", site.passwordFile,
                                                     "--state-dir", state, site.mountpoint], timeout: 60)
        #expect(result.status == 5, "\(result.err)")
        #expect(FileManager.default.fileExists(atPath: state), "the user's own state folder stays")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: state)) == [], "and is left as it was (no lock file)")
    }

    @Test("a foreground mount prints one line when it is ready: what, where, the state folder")
    func readyLine() throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        var text = ""
        let deadline = Date().addingTimeInterval(5)
        repeat {
            text = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
            if text.contains("ncfs: mounted") { break }
            usleep(50_000)
        } while Date() < deadline
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("ncfs: mounted") }
        #expect(lines.count == 1, "one ready line: \(text)")
        let line = String(lines.first ?? "")
        #expect(line.contains(server.baseURL) && line.contains("on \(mount.mountpoint.path)"), "\(line)")
        #expect(line.contains("state folder \(server.dataDir.path)/ncfs/"), "\(line)")
    }

    // MARK: The config file

    @Test("a misspelt config key is warned about, naming the nearest known key; known keys are not")
    func unknownConfigKey() throws {
        let site = try HelperSite(server: nil)
        defer { site.cleanUp() }
        let config = site.folder.appendingPathComponent("ncfs.conf")
        try """
            # my settings
            NEXTCLOUD_WEBDAV_URL=http://127.0.0.1:9/remote.php/dav/files/alice/
            NEXTCLOUD_WEBDAV_USER=alice
            COMPLETELY_UNRELATED=1
            nextcloud_webdav_uesr=alice

            """.write(to: config, atomically: true, encoding: .utf8)
        let result = site.run(MountedServer.binary, ["ls", "--config", config.path])
        #expect(result.status == 3, "still a configuration error: \(result.err)")
        let warnings = result.err.split(separator: "\n").filter { $0.contains("warning") }
        #expect(warnings.count == 3, "one warning per unknown key, once: \(result.err)")
        #expect(warnings.first?.contains("\(config.path):2: unknown setting NEXTCLOUD_WEBDAV_URL") == true
                && warnings.first?.contains("did you mean NEXTCLOUD_WEBDAV_BASE_URL?") == true, "\(result.err)")
        #expect(warnings.dropFirst().first?.contains("COMPLETELY_UNRELATED") == true
                && warnings.dropFirst().first?.contains("the known settings are NEXTCLOUD_WEBDAV_BASE_URL") == true,
                "far from every key: the known ones are listed: \(result.err)")
        #expect(warnings.last?.contains(":5: unknown setting nextcloud_webdav_uesr") == true
                && warnings.last?.contains("did you mean NEXTCLOUD_WEBDAV_USER?") == true, "\(result.err)")

        // The mount reads the file for connection and ingest settings: still one warning per key.
        let mount = site.run(MountedServer.binary, ["mount", "--config", config.path, "--url", "http://127.0.0.1:9/remote.php/dav/files/alice/",
                                                    "--password-file", site.passwordFile, site.mountpoint], timeout: 30)
        #expect(mount.status != 0)
        #expect(mount.err.components(separatedBy: "unknown setting NEXTCLOUD_WEBDAV_URL").count == 2, "warned once: \(mount.err)")

        try """
            NEXTCLOUD_WEBDAV_BASE_URL=http://127.0.0.1:9/remote.php/dav/files/alice/
            NEXTCLOUD_WEBDAV_USER=alice
            NEXTCLOUD_UPLOAD_PREFIX=photos
            NCFS_TIME_ZONE=UTC
            NEXTCLOUD_PUBLIC_SHARE_TOKEN=abc
            NEXTCLOUD_PUBLIC_BASE_URL=http://127.0.0.1:9
            NEXTCLOUD_PUBLIC_SHARE_PATH=photos
            NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE=\(site.passwordFile)
            """.write(to: config, atomically: true, encoding: .utf8)
        let known = site.run(MountedServer.binary, ["status", "--config", config.path], timeout: 30)
        #expect(known.status == 0, "\(known.err)")
        #expect(!known.err.contains("warning"), "\(known.err)")
    }

    // MARK: incoming/

    @Test("incoming/ refuses names the server refuses with EINVAL at once, as the rest of the mount does; temp names pass")
    func incomingNames() throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["ingest_delay=600"])
        defer { mount.unmount() }
        let staging = try stagingFolder(server)

        func createErrno(_ path: String) -> Int32 {
            let fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0o644)
            if fd >= 0 { close(fd); return 0 }
            return errno
        }
        for name in [".htaccess", "back\\slash.jpg", "x.filepart"] {
            #expect(createErrno(mount.path(name)) == EINVAL, "\(name) outside incoming/")
            #expect(createErrno(mount.path("incoming/" + name)) == EINVAL, "\(name) in incoming/")
            #expect(!FileManager.default.fileExists(atPath: staging + "/" + name), "\(name) never staged")
            #expect(mkdir(mount.path("incoming/" + name), 0o755) == -1 && errno == EINVAL, "mkdir \(name) in incoming/")
        }
        #expect(mkdir(mount.path("incoming/sub"), 0o755) == 0)
        #expect(createErrno(mount.path("incoming/sub/.htaccess")) == EINVAL, "in a subfolder too")

        // A browser's download name is a temp name, never sent: allowed, and renamed to a
        // name the server refuses it is refused.
        #expect(createErrno(mount.path("incoming/photo.jpg.part")) == 0)
        #expect(rename(mount.path("incoming/photo.jpg.part"), mount.path("incoming/.htaccess")) == -1 && errno == EINVAL)
        #expect(rename(mount.path("incoming/photo.jpg.part"), mount.path("incoming/photo.jpg")) == 0)
        #expect(FileManager.default.fileExists(atPath: staging + "/photo.jpg"))
    }

    @Test("incoming/ itself and its subfolders carry no item xattrs; its files do")
    func incomingFolderXattrs() throws {
        let server = try TestServer()
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["ingest_delay=600"])
        defer { mount.unmount() }
        #expect(mkdir(mount.path("incoming/sub"), 0o755) == 0)
        #expect(Posix.create(mount.path("incoming/a.jpg"), "not yet taken"))

        for folder in ["incoming", "incoming/sub"] {
            let dump = run("/usr/bin/getfattr", ["-d", "-m", "-", "--absolute-names", mount.path(folder)], errors: true).out
            #expect(!dump.contains("user.ncfs"), "\(folder): \(dump)")
            let one = run("/usr/bin/getfattr", ["-n", "user.ncfs.status", "--absolute-names", mount.path(folder)], errors: true)
            #expect(one.status != 0 && one.out.contains("No such attribute"), "\(folder): \(one.out)")
        }
        let file = run("/usr/bin/getfattr", ["-d", "--absolute-names", mount.path("incoming/a.jpg")]).out
        #expect(file.contains("user.ncfs.status=\"waiting\""), "\(file)")
    }

    // MARK: Helpers

    /// The mount's `<state>/incoming` folder under the server's data folder (MountedServer's
    /// XDG_STATE_HOME).
    private func stagingFolder(_ server: TestServer) throws -> String {
        let base = server.dataDir.appendingPathComponent("ncfs").path
        let folders = try FileManager.default.contentsOfDirectory(atPath: base)
        let folder = try #require(folders.first { FileManager.default.fileExists(atPath: base + "/" + $0 + "/incoming") })
        return base + "/" + folder + "/incoming"
    }

    /// Everything under `path`, for failure messages.
    static func tree(_ path: String) -> String {
        ((try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []).sorted().joined(separator: ", ")
    }

    /// Ends whatever a test may have mounted on `path` by mistake (when a refusal it expects
    /// did not happen): a lazy unmount, then SIGKILL for `ncfs mount` processes naming it.
    static func forceUnmount(_ path: String) {
        if MountedServer.isMounted(path) { _ = run("/usr/bin/fusermount3", ["-u", "-z", path], timeout: 10) }
        let deadline = Date().addingTimeInterval(5)
        while !daemons(serving: path).isEmpty && Date() < deadline { usleep(50_000) }
        for pid in daemons(serving: path) { kill(pid, SIGKILL) }
    }

    /// Live `ncfs mount` processes whose arguments name `path`.
    static func daemons(serving path: String) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { name -> pid_t? in
            guard let pid = pid_t(name), let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  stat.split(separator: ")").last?.split(separator: " ").first != "Z" else { return nil }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard args.first?.hasSuffix("/ncfs") == true, args.dropFirst().first == "mount", args.contains(path) else { return nil }
            return pid
        }
    }
}
