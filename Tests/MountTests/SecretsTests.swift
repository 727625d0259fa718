import Foundation
import TestSupport
import Testing

/// Secrets stay secret: a canary app password and a canary public share token go through a
/// whole run (doctor, a mount with ingest, a wrong password, a 401 and a 403 in the daemon,
/// status, items, quarantine, unmount), then every output, log, state and cache file and the
/// daemon's command line are searched for them. Password files and config files with a password
/// that group or others can read are refused; state and cache folders are 0700, their files 0600.
@Suite("Secrets: canaries in logs, state and cache; password files; private folders", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"),
       .enabled(if: IngestHarness.missing == nil, "\(IngestHarness.missing ?? "")"))
struct SecretsTests {
    /// The password (with its Basic-auth form) must appear nowhere. The share token must appear
    /// nowhere either, except inside public URLs — `<origin>/public.php/dav/files/<token>/…` in
    /// the catalog's `original_url` column, the `url` of each entry of its `derivatives` column,
    /// and the matching `originalURL`/`url` fields of `ncfs items --json` — which are the
    /// product's output (what the catalog exists to hand out), not a leak. Logs, messages and
    /// every other column get 0 hits.
    @Test("canary password and share token through doctor, mount + ingest (one item 403, one 401), a wrong password, status, items, quarantine and unmount: 0 hits outside public URLs; state and cache 0700/0600")
    func canaries() throws {
        let password = "canary-pw-" + SecretsTests.hex()
        let wrongPassword = "canary-wrong-" + SecretsTests.hex()
        let token = "Canary" + SecretsTests.hex()
        let server = try TestServer(arguments: ["--password", password, "--share", "\(token)=pindeck/media-uploads"])
        defer { server.stop() }
        let state = server.dataDir.appendingPathComponent("state")
        let cacheHome = server.dataDir.appendingPathComponent("cache-home")
        let environment = ["NEXTCLOUD_WEBDAV_APP_PASSWORD": password, "NEXTCLOUD_PUBLIC_SHARE_TOKEN": token,
                           "XDG_CACHE_HOME": cacheHome.path, "XDG_CONFIG_HOME": server.dataDir.path]
        var outputs: [(String, String)] = []
        func ncfs(_ args: [String], password override: String? = nil) -> (status: Int32, out: String) {
            var env = environment
            if let override { env["NEXTCLOUD_WEBDAV_APP_PASSWORD"] = override }
            // --verbose logs every request, where a URL or header would show; status and items send none.
            let verbose = ["status", "items"].contains(args[0]) ? [] : ["--verbose"]
            let result = run(MountedServer.binary, [args[0], "--url", server.baseURL, "--user", server.user] + verbose + args.dropFirst(),
                             timeout: 60, environment: env, errors: true)
            outputs.append(("ncfs \(args.joined(separator: " "))", result.out))
            return result
        }

        let doctor = ncfs(["doctor"])
        #expect(doctor.status == 0 && doctor.out.contains("credentials accepted"), "\(doctor.out)")
        let refused = ncfs(["ls"], password: wrongPassword)
        #expect(refused.status == 4 && refused.out.contains("HTTP 401"), "\(refused.out)")
        let doctorRefused = ncfs(["doctor"], password: wrongPassword)
        #expect(doctorRefused.out.contains("credentials refused (HTTP 401)"), "\(doctorRefused.out)")

        // The share itself, as a public WebDAV URL given through the environment (so no argv holds
        // it): listed, a missing path (404), and a connection reset on every attempt (the
        // warning a failed request logs even without --verbose).
        var publicEnvironment = environment
        publicEnvironment["NEXTCLOUD_WEBDAV_APP_PASSWORD"] = ""
        publicEnvironment["NEXTCLOUD_WEBDAV_BASE_URL"] = "\(server.origin)/public.php/dav/files/\(token)/"
        func ncfsPublic(_ args: [String]) -> (status: Int32, out: String) {
            let result = run(MountedServer.binary, args, timeout: 60, environment: publicEnvironment, errors: true)
            outputs.append(("ncfs \(args.joined(separator: " ")) (public share URL)", result.out))
            return result
        }
        #expect(ncfsPublic(["ls", "--verbose"]).status == 0)
        #expect(ncfsPublic(["ls", "--verbose", "missing"]).status == 5)
        try server.fault(method: "PROPFIND", pathContains: "public.php", action: "reset", count: 10)
        let reset = ncfsPublic(["ls"])
        #expect(reset.status == 7 && reset.out.contains("failed after"), "\(reset.out)")
        try server.control("clear", [:])

        try FileManager.default.createDirectory(at: server.filesDir.appendingPathComponent("docs"), withIntermediateDirectories: true)
        try Data("read through the cache\n".utf8).write(to: server.filesDir.appendingPathComponent("docs/readme.txt"))
        try server.control("rescan", [:])
        var mount: MountedServer? = try MountedServer(
            server, options: ["state_dir=\(state.path)", "ingest_delay=0.3"],
            arguments: ["--time-zone", "UTC", "--verbose"], environment: environment)
        defer { mount?.unmount() }
        let mnt = mount!
        let daemonCommandLine = SecretsTests.commandLine(ofProcessMounting: mnt.mountpoint.path)
        #expect(daemonCommandLine?.arguments != nil, "the daemon's /proc/<pid>/cmdline was not found")
        outputs.append(("daemon /proc/<pid>/cmdline", daemonCommandLine?.arguments ?? ""))
        // The environment is how the secrets reach the daemon: the search must find them there.
        #expect(daemonCommandLine?.environment.contains(password) == true && daemonCommandLine?.environment.contains(token) == true,
                "the search does not find the canaries in /proc/<pid>/environ, where they are")

        // Content through the cache, a write outside incoming/ (the upload journal), and ingest.
        #expect(try String(contentsOfFile: mnt.path("docs/readme.txt"), encoding: .utf8) == "read through the cache\n")
        try Data("a note\n".utf8).write(to: URL(fileURLWithPath: mnt.path("docs/note.txt")))
        // Each is refused in its bulk request first, then gets the status on its PUT.
        try server.control("fault", ["method": "BULK-PART", "path_contains": "-item.txt", "message": "injected", "count": 2])
        try server.fault(method: "PUT", pathContains: "forbidden-item", status: 403, count: 1)
        try server.fault(method: "PUT", pathContains: "unauthorized-item", status: 401, count: 1)
        for name in ["first.txt", "second.txt", "forbidden-item.txt", "unauthorized-item.txt"] {
            try Data("ingest me: \(name)\n".utf8).write(to: URL(fileURLWithPath: mnt.path("incoming/\(name)")))
        }
        try SecretsTests.writeJPEG(to: mnt.path("incoming/photo.jpg"))
        let deadline = Date().addingTimeInterval(90)
        var items: [[String: Any]] = []
        while Date() < deadline {
            let result = run(MountedServer.binary, ["items", "--json", "--limit", "0", "--state-dir", state.path], timeout: 30)
            items = (try? JSONSerialization.jsonObject(with: Data(result.out.utf8))) as? [[String: Any]] ?? []
            let final: Set<String> = ["succeeded", "failed", "duplicate"]
            if items.count == 5 && items.allSatisfy({ final.contains($0["state"] as? String ?? "") }) { break }
            usleep(300_000)
        }
        let states = Dictionary(uniqueKeysWithValues: items.map { ($0["name"] as? String ?? "", $0["state"] as? String ?? "") })
        #expect(states == ["first.txt": "succeeded", "second.txt": "succeeded", "photo.jpg": "succeeded",
                           "forbidden-item.txt": "failed", "unauthorized-item.txt": "failed"], "\(states)\n\(mnt.logTail)")
        let status = ncfs(["status", "--json", "--state-dir", state.path])
        #expect(status.status == 0, "\(status.out)")
        let listed = ncfs(["items", "--json", "--limit", "0", "--state-dir", state.path])
        #expect(listed.status == 0 && listed.out.contains("/public.php/dav/files/\(token)/"),
                "items carry no public URLs with the token: \(listed.out)")
        outputs.append(("items --json, URL fields removed", SecretsTests.withoutURLFields(listed.out)))
        outputs.removeAll { $0.0.hasPrefix("ncfs items") }
        let quarantine = ncfs(["quarantine", "--dry-run", "--state-dir", state.path])
        #expect(quarantine.status == 0, "\(quarantine.out)")
        #expect(mnt.unmount() == 0, "clean exit after fusermount3 -u")
        mount = nil
        outputs.append(("daemon log (stdout+stderr, --verbose)", (try? String(contentsOf: mnt.log, encoding: .utf8)) ?? ""))

        // The search.
        let basic = { (pw: String) in Data("\(server.user):\(pw)".utf8).base64EncodedString() }
        let everywhere = [password, String(password.dropFirst("canary-pw-".count)), basic(password),
                          wrongPassword, String(wrongPassword.dropFirst("canary-wrong-".count)), basic(wrongPassword)]
        let tokenNeedles = [token, String(token.dropFirst("Canary".count))]
        var hits: [String] = []
        for (what, text) in outputs {
            for needle in everywhere + tokenNeedles where text.contains(needle) { hits.append("\(what): \(needle)") }
        }
        let files = SecretsTests.files(under: [state, cacheHome])
        #expect(files.contains { $0.hasSuffix("/journal.sqlite") } && files.contains { $0.hasSuffix("/catalog.sqlite") }
                && files.contains { $0.contains("/cache-home/") }, "the run left fewer files than expected: \(files)")
        for path in files {
            guard let data = FileManager.default.contents(atPath: path) else { hits.append("\(path): unreadable"); continue }
            // The catalog holds the public URLs: its token check is per column, below.
            let isCatalog = (path as NSString).lastPathComponent.hasPrefix("catalog.sqlite")
            for needle in everywhere + (isCatalog ? [] : tokenNeedles) where data.range(of: Data(needle.utf8)) != nil {
                hits.append("\(path): \(needle)")
            }
        }
        hits += try SecretsTests.tokenOutsideURLColumns(catalog: state.appendingPathComponent("catalog.sqlite").path, token: token)
        #expect(hits.isEmpty, "secrets found:\n\(hits.joined(separator: "\n"))")

        // Private folders and files (after the run: whatever it made along the way).
        for folder in [state, state.appendingPathComponent("incoming"), state.appendingPathComponent("staging"),
                       state.appendingPathComponent("ingest-work")] {
            #expect(SecretsTests.mode(folder.path) == 0o700, "\(folder.path): mode \(String(SecretsTests.mode(folder.path) ?? 0, radix: 8))")
        }
        let open = run("/usr/bin/find", [state.path, cacheHome.path, "(", "-type", "d", "-perm", "/077", ")", "-o",
                                         "(", "!", "-type", "d", "-perm", "/177", ")", "-printf", "%m %p\\n"], timeout: 30)
        #expect(open.status == 0 && open.out.isEmpty, "folders not 0700 / files not 0600 (or stricter):\n\(open.out)")
    }

    @Test("a password file or config file with a password that group or others can read is refused (exit 3) by --password-file, NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE, -o password_file= and --config; 0600 works; -o password= is refused")
    func passwordFiles() throws {
        let server = try TestServer()
        defer { server.stop() }
        let dir = server.dataDir.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("app-password")
        try Data("\(server.password)\n".utf8).write(to: file)
        let config = dir.appendingPathComponent("ncfs.conf")
        try Data("NEXTCLOUD_WEBDAV_APP_PASSWORD=\(server.password)\n".utf8).write(to: config)
        let base = ["--url", server.baseURL, "--user", server.user]
        let env = ["XDG_CONFIG_HOME": dir.path, "XDG_CACHE_HOME": server.dataDir.path, "XDG_STATE_HOME": server.dataDir.path]
        let ways: [(String, [String], [String: String], URL)] = [
            ("--password-file", ["ls"] + base + ["--password-file", file.path], [:], file),
            ("NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE", ["ls"] + base, ["NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE": file.path], file),
            ("--config", ["ls"] + base + ["--config", config.path], [:], config),
        ]
        for (way, args, extra, secret) in ways {
            for mode in [0o644, 0o640, 0o604, 0o620] as [mode_t] {
                chmod(secret.path, mode)
                let result = run(MountedServer.binary, args, timeout: 30, environment: env.merging(extra) { $1 }, errors: true)
                #expect(result.status == 3 && result.out.contains("is readable by other users") && result.out.contains("chmod 600"),
                        "\(way) at \(String(mode, radix: 8)): \(result.status) \(result.out)")
                #expect(!result.out.contains(server.password), "\(way): the password is in the message")
            }
            chmod(secret.path, 0o600)
            let result = run(MountedServer.binary, args, timeout: 30, environment: env.merging(extra) { $1 }, errors: true)
            #expect(result.status == 0, "\(way) at 600: \(result.out)")
        }

        // The mount: -o password_file= of an open file is refused before mounting; password= always.
        chmod(file.path, 0o644)
        for option in ["password_file=\(file.path)", "password=\(server.password)"] {
            let result = mountExpectingRefusal(base + ["-o", option], mountpoint: server.dataDir.appendingPathComponent("mnt-refused"),
                                               environment: env)
            #expect(result.status != 0 && !result.mounted, "-o \(option.prefix(14))…: \(result.out)")
            #expect(!result.out.contains(server.password), "-o \(option.prefix(14))…: the password is in the message: \(result.out)")
        }
    }

    // MARK: Helpers

    static func hex() -> String { (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o777 : nil
    }

    /// Every regular file below the folders.
    static func files(under folders: [URL]) -> [String] {
        folders.flatMap { folder -> [String] in
            guard let walker = FileManager.default.enumerator(atPath: folder.path) else { return [] }
            return walker.compactMap { $0 as? String }.map { folder.appendingPathComponent($0).path }.filter {
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && !isDirectory.boolValue
            }
        }
    }

    /// The command line and environment of the `ncfs mount` process serving `mountpoint`, NUL
    /// separators as spaces (only read).
    static func commandLine(ofProcessMounting mountpoint: String) -> (arguments: String, environment: String)? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { Int($0) != nil } ?? []
        func read(_ pid: String, _ file: String) -> [String] {
            (FileManager.default.contents(atPath: "/proc/\(pid)/\(file)") ?? Data()).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
        for pid in pids {
            let args = read(pid, "cmdline")
            if args.first?.hasSuffix("/ncfs") == true, args.contains("mount"), args.contains(mountpoint) {
                return (args.joined(separator: " "), read(pid, "environ").joined(separator: " "))
            }
        }
        return nil
    }

    /// `ncfs items --json` without the fields that are public URLs (keys ending in "url").
    static func withoutURLFields(_ json: String) -> String {
        func strip(_ value: Any) -> Any {
            if let object = value as? [String: Any] {
                return object.filter { !$0.key.lowercased().hasSuffix("url") }.mapValues(strip)
            }
            if let array = value as? [Any] { return array.map(strip) }
            return value
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(json.utf8)),
              let data = try? JSONSerialization.data(withJSONObject: strip(value)) else { return json }
        return String(decoding: data, as: UTF8.self)
    }

    /// Rows of the catalog where the token appears outside `original_url`, `share_url` and the
    /// `url` of a derivative (checked with Python's sqlite3, read-only).
    static func tokenOutsideURLColumns(catalog: String, token: String) throws -> [String] {
        let script = """
            import json, sqlite3, sys
            db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
            token = sys.argv[2]
            cursor = db.execute("SELECT * FROM items")
            columns = [c[0] for c in cursor.description]
            in_urls = 0
            for row in cursor:
                for column, value in zip(columns, row):
                    text = value if isinstance(value, str) else ""
                    if column in ("original_url", "share_url"):
                        in_urls += token in text
                        continue
                    if column == "derivatives":
                        entries = json.loads(text)
                        in_urls += sum(token in (e.get("url") or "") for e in entries)
                        text = json.dumps([{k: v for k, v in e.items() if k != "url"} for e in entries])
                    if token in text:
                        print("catalog items.%s of %s: %s" % (column, row[columns.index("name")], text))
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'items'"):
                for row in db.execute('SELECT * FROM "%s"' % name):
                    if token in repr(row):
                        print("catalog table %s: %r" % (name, row))
            print("urls-with-token %d" % in_urls)
            """
        let result = run(IngestHarness.python, ["-c", script, catalog, token], timeout: 30, errors: true)
        guard result.status == 0, let last = result.out.split(separator: "\n").last, last.hasPrefix("urls-with-token ") else {
            throw MountError("reading the catalog failed: \(result.out)")
        }
        // The token must be where it belongs (else this check proves nothing).
        if Int(last.dropFirst("urls-with-token ".count)) ?? 0 == 0 { return ["catalog: no public URL carries the token"] }
        return result.out.split(separator: "\n").dropLast().map(String.init)
    }

    /// A small JPEG (so the item gets derivatives and their public URLs), made with Pillow.
    static func writeJPEG(to path: String) throws {
        let script = "import sys\nfrom PIL import Image\nImage.new('RGB', (64, 48), (200, 40, 40)).save(sys.argv[1], quality=80)\n"
        let result = run(IngestHarness.python, ["-c", script, path], timeout: 30, errors: true)
        guard result.status == 0 else { throw MountError("making a JPEG failed: \(result.out)") }
    }
}
