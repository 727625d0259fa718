import Foundation
import TestSupport
import Testing

/// TLS verification against the test server over HTTPS (`--tls-cert/--tls-key`), with
/// certificates made by the `openssl` CLI in a temporary folder: a private CA and a server
/// certificate it signed for 127.0.0.1, a self-signed one, an expired one (signed by the CA,
/// valid in January 2020) and one for another host name (SAN DNS:example.invalid only). Every
/// bad certificate is refused by `ncfs ls`, `ncfs doctor` and `ncfs mount` with a message that
/// names `--ca-file`, also when the CA is trusted (expired, wrong name). `--insecure` is the
/// only way past them: it turns off peer and host verification both (libcurl's VERIFYPEER and
/// VERIFYHOST), so all three then work, and it always says so on stderr.
@Suite("TLS verification: private CA, bad certificates, --insecure", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: TLSCertificates.openssl != nil, "needs the openssl CLI to make test certificates"))
struct TLSTests {
    @Test("a certificate from a private CA: refused without --ca-file (the message says to pass it), accepted with it by ls, put, doctor and mount")
    func privateCA() throws {
        let certs = try TLSCertificates()
        defer { certs.remove() }
        let tls = try TLSServer(certs.pair("good"))
        defer { tls.stop() }

        let refused = tls.ncfs(["ls"])
        #expect(refused.status == 7, "\(refused.out)")
        #expect(refused.out.contains("--ca-file") && refused.out.contains("unable to get local issuer certificate"), "\(refused.out)")

        let trusted = ["--ca-file", certs.ca]
        let local = certs.dir.appendingPathComponent("hello.txt")
        try Data("hello over TLS\n".utf8).write(to: local)
        let put = tls.ncfs(["put"] + trusted + [local.path, "hello.txt"])
        #expect(put.status == 0, "\(put.out)")
        let ls = tls.ncfs(["ls"] + trusted)
        #expect(ls.status == 0 && ls.out.split(separator: "\n").contains("hello.txt"), "\(ls.out)")
        #expect(!ls.out.contains("WARNING"), "\(ls.out)")
        let doctor = tls.ncfs(["doctor"] + trusted)
        #expect(doctor.out.contains("TLS certificate valid") && !doctor.out.contains("FAIL"), "\(doctor.out)")

        let mount = try MountedServer(tls.server, arguments: ["--url", tls.url] + trusted)
        defer { #expect(mount.unmount() == 0, "clean exit after fusermount3 -u") }
        #expect(try String(contentsOfFile: mount.path("hello.txt"), encoding: .utf8) == "hello over TLS\n")
        let listing = try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint.path)
        #expect(listing.contains("hello.txt"), "\(listing)")
    }

    @Test("self-signed, expired and wrong-host certificates: ls, doctor and mount refuse (non-zero, nothing mounted, the cause and --ca-file in the message), with or without the CA trusted",
          arguments: [
              ("selfsigned", "self-signed certificate"),
              ("expired", "certificate has expired"),
              ("wronghost", "no alternative certificate subject name matches target host name '127.0.0.1'"),
          ])
    func badCertificates(name: String, causeWithCA: String) throws {
        let certs = try TLSCertificates()
        defer { certs.remove() }
        let tls = try TLSServer(certs.pair(name))
        defer { tls.stop() }

        for extra in [[], ["--ca-file", certs.ca]] {
            // Until the CA is trusted, libcurl stops at the unknown issuer of the CA-signed ones.
            let cause = extra.isEmpty && name != "selfsigned" ? "unable to get local issuer certificate" : causeWithCA
            let ls = tls.ncfs(["ls"] + extra)
            #expect(ls.status == 7, "\(name) \(extra): \(ls.out)")
            #expect(ls.out.contains(cause), "\(name) \(extra): the message does not name the cause: \(ls.out)")
            #expect(ls.out.contains("--ca-file CA.pem"), "\(name) \(extra): \(ls.out)")

            let doctor = tls.ncfs(["doctor"] + extra)
            #expect(doctor.status != 0 && doctor.out.contains("FAIL  TLS certificate not valid") && doctor.out.contains("--ca-file"),
                    "\(name) \(extra): \(doctor.out)")

            let mount = tls.refusedMount(extra)
            #expect(mount.status != 0 && !mount.mounted, "\(name) \(extra): \(mount.out)")
            #expect(mount.out.contains(cause) && mount.out.contains("--ca-file"), "\(name) \(extra): \(mount.out)")
        }
    }

    @Test("--pinned-public-key: the server's key (alone or beside another) lets ls and mount through; another key is refused with the pin advice, also with the CA trusted; a malformed pin exits 3")
    func pinnedPublicKey() throws {
        let certs = try TLSCertificates()
        defer { certs.remove() }
        let tls = try TLSServer(certs.pair("good"))
        defer { tls.stop() }
        let right = try certs.pin("good"), other = try certs.pin("selfsigned")
        #expect(right != other)
        let trusted = ["--ca-file", certs.ca]

        for pins in [right, "\(other);\(right)"] {
            let ls = tls.ncfs(["ls"] + trusted + ["--pinned-public-key", pins])
            #expect(ls.status == 0, "\(pins): \(ls.out)")
        }
        let refused = tls.ncfs(["ls"] + trusted + ["--pinned-public-key", other])
        #expect(refused.status == 7, "\(refused.out)")
        #expect(refused.out.contains("pinned public key") && refused.out.contains("--pinned-public-key") && !refused.out.contains("--ca-file CA.pem"),
                "the message names the pin, not the CA: \(refused.out)")
        // The environment variable works like the flag.
        var environment = tls.environment
        environment["NCFS_PINNED_PUBLIC_KEY"] = other
        let byEnvironment = run(MountedServer.binary, ["ls", "--url", tls.url, "--user", tls.server.user] + trusted,
                                timeout: 60, environment: environment, errors: true)
        #expect(byEnvironment.status == 7 && byEnvironment.out.contains("pinned public key"), "\(byEnvironment.out)")

        for malformed in ["sha256//tooShort", "md5//AAAA", "\(right);"] {
            let bad = tls.ncfs(["ls"] + trusted + ["--pinned-public-key", malformed])
            #expect(bad.status == 3 && bad.out.contains("is not sha256//"), "\(malformed): \(bad.out)")
        }

        let mountRefused = tls.refusedMount(trusted + ["--pinned-public-key", other])
        #expect(mountRefused.status != 0 && !mountRefused.mounted && mountRefused.out.contains("pinned public key"), "\(mountRefused.out)")
        let mount = try MountedServer(tls.server, arguments: ["--url", tls.url] + trusted + ["--pinned-public-key", right])
        defer { #expect(mount.unmount() == 0, "clean exit after fusermount3 -u") }
        #expect(FileManager.default.fileExists(atPath: mount.path("incoming")))
    }

    @Test("--insecure: exists, off by default, warns loudly on stderr, and lets ls and mount past a self-signed, an expired and a wrong-host certificate")
    func insecure() throws {
        let help = run(MountedServer.binary, ["ls", "--help"], timeout: 30, errors: true)
        #expect(help.out.contains("--insecure"), "\(help.out)")
        let certs = try TLSCertificates()
        defer { certs.remove() }
        for name in ["selfsigned", "expired", "wronghost"] {
            let tls = try TLSServer(certs.pair(name))
            defer { tls.stop() }
            let (status, out, err) = tls.ncfsSplit(["ls", "--insecure"])
            #expect(status == 0, "\(name): \(err)")
            #expect(err.contains("WARNING: --insecure: TLS certificates and host names are NOT verified"), "\(name): \(err)")
            #expect(err.components(separatedBy: "WARNING").count == 2, "\(name): warned more than once: \(err)")
            #expect(!out.contains("WARNING"), "\(name): the warning belongs on stderr: \(out)")
            let doctor = tls.ncfs(["doctor", "--insecure"])
            #expect(doctor.out.contains("warn  TLS verification is OFF (--insecure)") && !doctor.out.contains("FAIL"), "\(name): \(doctor.out)")
        }
        // One mount with --insecure (a wrong host name: the check --insecure also drops).
        let tls = try TLSServer(certs.pair("wronghost"))
        defer { tls.stop() }
        let mount = try MountedServer(tls.server, arguments: ["--url", tls.url, "--insecure"])
        defer { #expect(mount.unmount() == 0, "clean exit after fusermount3 -u") }
        #expect(FileManager.default.fileExists(atPath: mount.path("incoming")))
        let log = (try? String(contentsOf: mount.log, encoding: .utf8)) ?? ""
        #expect(log.contains("WARNING: --insecure"), "the daemon's log does not show the warning: \(log)")
    }
}

/// The test certificates, made with the `openssl` CLI in a folder of their own.
struct TLSCertificates {
    /// The openssl binary on PATH, nil when missing (the suite is then skipped).
    static let openssl: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/openssl" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    let dir: URL
    var ca: String { dir.appendingPathComponent("ca.pem").path }

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                    "-subj", "/CN=ncfs test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        try write("ip.ext", "subjectAltName=IP:127.0.0.1\n")
        try write("wronghost.ext", "subjectAltName=DNS:example.invalid\n")
        for name in ["good", "expired", "wronghost"] {
            try openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr",
                        "-subj", name == "wronghost" ? "/CN=example.invalid" : "/CN=127.0.0.1")
        }
        try openssl("x509", "-req", "-in", "good.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1001",
                    "-days", "2", "-extfile", "ip.ext", "-out", "good.pem")
        try openssl("x509", "-req", "-in", "wronghost.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1002",
                    "-days", "2", "-extfile", "wronghost.ext", "-out", "wronghost.pem")
        // `openssl x509` (3.0) cannot set a start date; `openssl ca` can, with a minimal database.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("ca-db"), withIntermediateDirectories: true)
        try write("ca-db/index.txt", "")
        try write("ca-db/serial", "1003\n")
        try write("ca.cnf", """
            [ca]
            default_ca = test
            [test]
            database = ca-db/index.txt
            new_certs_dir = ca-db
            serial = ca-db/serial
            default_md = sha256
            policy = any
            unique_subject = no
            [any]
            commonName = supplied

            """)
        try openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "expired.csr",
                    "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-extfile", "ip.ext", "-notext",
                    "-out", "expired.pem")
        try openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "selfsigned.key", "-out", "selfsigned.pem",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    }

    /// Certificate and key files of `name` (good, selfsigned, expired, wronghost).
    func pair(_ name: String) -> (cert: String, key: String) {
        (dir.appendingPathComponent("\(name).pem").path, dir.appendingPathComponent("\(name).key").path)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }

    /// `sha256//…` of the public key in `name`'s certificate, the way the README says to make it.
    func pin(_ name: String) throws -> String {
        let script = "\"$0\" x509 -in \"$1\" -pubkey -noout | \"$0\" pkey -pubin -outform der | \"$0\" dgst -sha256 -binary | base64"
        let result = run("/bin/sh", ["-c", script, TLSCertificates.openssl ?? "openssl", pair(name).cert], timeout: 30, errors: true)
        let hash = result.out.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, hash.count == 44 else { throw MountError("pin of \(name): \(result.out)") }
        return "sha256//" + hash
    }

    private func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: dir.appendingPathComponent(name))
    }

    private func openssl(_ args: String...) throws {
        // Run inside the folder: the CA config's relative paths and the output names are there.
        let result = run("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", dir.path, TLSCertificates.openssl ?? "openssl"] + args,
                         timeout: 60, errors: true)
        guard result.status == 0 else { throw MountError("openssl \(args.joined(separator: " ")): \(result.out)") }
    }
}

/// A test server speaking HTTPS with one certificate, and `ncfs` commands pointed at it.
struct TLSServer {
    let server: TestServer

    init(_ pair: (cert: String, key: String)) throws {
        server = try TestServer(arguments: ["--tls-cert", pair.cert, "--tls-key", pair.key])
    }

    var url: String { "https://127.0.0.1:\(server.port)/remote.php/dav/files/\(server.user)/" }

    func stop() { server.stop() }

    var environment: [String: String] {
        ["NEXTCLOUD_WEBDAV_APP_PASSWORD": server.password, "XDG_CONFIG_HOME": server.dataDir.path,
         "XDG_CACHE_HOME": server.dataDir.path, "XDG_STATE_HOME": server.dataDir.path]
    }

    /// `ncfs COMMAND --url URL --user alice ARGS…`: status and stdout followed by stderr.
    func ncfs(_ args: [String]) -> (status: Int32, out: String) {
        run(MountedServer.binary, [args[0], "--url", url, "--user", server.user] + args.dropFirst(),
            timeout: 60, environment: environment, errors: true)
    }

    /// Like `ncfs(_:)`, with stdout and stderr apart.
    func ncfsSplit(_ args: [String]) -> (status: Int32, out: String, err: String) {
        let err = server.dataDir.appendingPathComponent("stderr-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: err) }
        let result = run("/bin/sh", ["-c", "exec \"$@\" 2>\"$0\"", err.path, MountedServer.binary, args[0], "--url", url,
                                     "--user", server.user] + args.dropFirst(),
                         timeout: 60, environment: environment)
        return (result.status, result.out, (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    func refusedMount(_ extra: [String]) -> (status: Int32, out: String, mounted: Bool) {
        mountExpectingRefusal(["--url", url, "--user", server.user] + extra,
                              mountpoint: server.dataDir.appendingPathComponent("mnt-refused"), environment: environment)
    }
}

/// `ncfs mount ARGS MOUNTPOINT` in the foreground, expected to fail before mounting. Should it
/// mount after all, the time limit kills it and the mount is detached, so nothing is left behind.
func mountExpectingRefusal(_ args: [String], mountpoint: URL, environment: [String: String]) -> (status: Int32, out: String, mounted: Bool) {
    try? FileManager.default.createDirectory(at: mountpoint, withIntermediateDirectories: true)
    let result = run(MountedServer.binary, ["mount"] + args + [mountpoint.path], timeout: 30, environment: environment, errors: true)
    let mounted = MountedServer.isMounted(mountpoint.path)
    if mounted { _ = run("/usr/bin/fusermount3", ["-u", "-z", mountpoint.path], timeout: 10) }
    return (result.status, result.out, mounted)
}
