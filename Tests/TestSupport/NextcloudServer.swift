import Foundation
import HTTPTransport
public import WebDAV

/// A server a test can mount and talk to: the bundled emulator (`TestServer`) or a folder of a
/// real Nextcloud (`NextcloudSpace`). `dataDir` is a local scratch folder of the test's own (mount
/// point, state, cache), never the server's storage.
public protocol DAVServer: AnyObject, Sendable {
    var origin: String { get }
    var baseURL: String { get }
    var user: String { get }
    var password: String { get }
    var dataDir: URL { get }
}

extension TestServer: DAVServer {}

/// A real Nextcloud 32.0.1 on loopback, started by the release kit's `start DIR PORT` (the
/// `nextcloud/` folder beside the repository in CI, or where `NCFS_NEXTCLOUD_DIR` points).
/// One instance serves the whole test run: it takes ~20 s to start, so tests share it and each
/// works in a folder of its own (`space()`). It is stopped when the test process exits
/// (`atexit`), and `scripts/test` stops it again from its EXIT trap in case the process died.
public final class NextcloudServer: @unchecked Sendable {
    // @unchecked: every property is set in init and never changed.
    public let dir: URL
    public let origin: String
    public let davURL: String
    public let user: String
    public let password: String
    public let accessLog: URL
    let kit: URL

    /// The release kit (`start`, `stop`, the archive): `NCFS_NEXTCLOUD_DIR`, else `../shared/nextcloud`
    /// beside the repository.
    public static var kit: URL? {
        if let dir = ProcessInfo.processInfo.environment["NCFS_NEXTCLOUD_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir)
        }
        let beside = TestServer.repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/nextcloud")
        return FileManager.default.isExecutableFile(atPath: beside.appendingPathComponent("start").path) ? beside : nil
    }

    /// Why the real-server suite cannot run here (nil: it can).
    public static var unavailable: String? {
        guard let kit else {
            return "no real Nextcloud kit: ../shared/nextcloud is not beside this clone and NCFS_NEXTCLOUD_DIR is not set"
        }
        if !FileManager.default.isExecutableFile(atPath: kit.appendingPathComponent("start").path) {
            return "\(kit.path)/start is missing or not executable"
        }
        if getuid() != 0 { return "the real Nextcloud kit must run as root (it installs Apache and PHP)" }
        return nil
    }

    private nonisolated(unsafe) static var started: Result<NextcloudServer, any Error>?
    private static let lock = NSLock()

    /// The run's one instance, started on first use.
    public static func shared() throws -> NextcloudServer {
        try lock.withLock {
            if let started { return try started.get() }
            let result = Result { try NextcloudServer() }
            started = result
            if case .success = result { atexit { NextcloudServer.stopShared() } }
            return try result.get()
        }
    }

    /// Stops the run's instance and removes its folder (the `atexit` handler).
    static func stopShared() {
        guard case .success(let server)? = started else { return }
        server.stop()
        try? FileManager.default.removeItem(at: server.dir)
    }

    private init() throws {
        guard let kit = NextcloudServer.kit else { throw NextcloudError(NextcloudServer.unavailable ?? "no kit") }
        self.kit = kit
        // `NCFS_NEXTCLOUD_RUN_DIR` comes from scripts/test, whose EXIT trap stops what runs there.
        let base = ProcessInfo.processInfo.environment["NCFS_NEXTCLOUD_RUN_DIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        dir = base.appendingPathComponent("nextcloud-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        // Apache runs as www-data: the folder must be traversable by others (mktemp makes 0700).
        var info = stat()
        if stat(base.path, &info) == 0 && info.st_mode & 0o001 == 0 { chmod(base.path, (info.st_mode & 0o7777) | 0o001) }
        let port = try NextcloudServer.freePort()
        // A bare machine installs Apache and PHP first (a minute or two); a warm one starts in ~20 s.
        let started = NextcloudServer.shell(kit.appendingPathComponent("start").path, [dir.path, String(port)], timeout: 900)
        guard started.status == 0 else {
            NextcloudServer.shell(kit.appendingPathComponent("stop").path, [dir.path], timeout: 60)
            throw NextcloudError("\(kit.path)/start failed (exit \(started.status)):\n\(started.out.suffix(3000))")
        }
        let envFile = dir.appendingPathComponent("env")
        let env = try NextcloudServer.readEnv(envFile)
        let value = { (key: String) throws -> String in
            guard let v = env[key], !v.isEmpty else { throw NextcloudError("\(key) missing from \(envFile.path)") }
            return v
        }
        origin = try value("NC_URL")
        davURL = try value("NC_DAV_URL")
        user = try value("NC_USER")
        password = try value("NC_APP_PASSWORD")
        accessLog = URL(fileURLWithPath: try value("NC_ACCESS_LOG"))
    }

    public func stop() {
        NextcloudServer.shell(kit.appendingPathComponent("stop").path, [dir.path], timeout: 60)
    }

    /// A folder of its own on the server (created empty) and a local scratch folder, for one test.
    public func space(_ label: String) throws -> NextcloudSpace {
        try NextcloudSpace(server: self, label: label)
    }

    /// A client on the account's root (not a space), fast retries.
    public func client(path: String = "") throws -> WebDAVClient {
        try testClient(davURL + path, Credentials(user: user, password: password),
                       retry: RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(50), maxDelay: .milliseconds(500), budget: .seconds(30)),
                       stallTimeout: .seconds(30))
    }

    // MARK: Access log

    /// One line of Apache's access log (`%h %l %u %t "%r" %>s %b %D "%{User-Agent}i"`).
    public struct LoggedRequest: Sendable, CustomStringConvertible {
        public var method: String
        /// The request target, percent-encoded as sent.
        public var path: String
        public var status: Int
        /// Body bytes sent (`%b`; 0 for "-").
        public var bytes: Int
        /// Server time in microseconds (`%D`).
        public var microseconds: Int
        public var userAgent: String
        public var description: String { "\(method) \(path) \(status)" }
    }

    /// Every request in the log, in order, without Apache's own "internal dummy connection"
    /// wake-ups (`OPTIONS *`), which no client sent.
    public func requests() -> [LoggedRequest] {
        guard let text = try? String(contentsOf: accessLog, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap(NextcloudServer.parse).filter { $0.path != "*" }
    }

    static func parse(_ line: Substring) -> LoggedRequest? {
        // The quoted request line, then status, bytes, microseconds, the quoted user agent.
        let quoted = line.split(separator: "\"", omittingEmptySubsequences: false)
        guard quoted.count >= 5 else { return nil }
        let request = quoted[1].split(separator: " ")
        let numbers = quoted[2].split(separator: " ")
        guard request.count >= 2, numbers.count >= 3, let status = Int(numbers[0]), let micros = Int(numbers[2]) else { return nil }
        return LoggedRequest(method: String(request[0]), path: String(request[1]), status: status,
                             bytes: Int(numbers[1]) ?? 0, microseconds: micros,
                             userAgent: String(quoted[3]))
    }

    /// The number of requests logged so far, once the log has been quiet for 300 ms (at most
    /// 5 s): the mark to pass to `requests(since:)`.
    public func mark() -> Int { requests(since: 0).count }

    /// Requests logged after `mark`. Apache writes a line once the answer has gone out, so this
    /// first waits for the log to be quiet for 300 ms (at most 5 s).
    public func requests(since mark: Int) -> [LoggedRequest] {
        waitUntilQuiet(accessLog, quiet: 0.3, limit: 5)
        return Array(requests().dropFirst(mark))
    }

    // MARK: Helpers

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NextcloudError("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw NextcloudError("bind: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func readEnv(_ file: URL) throws -> [String: String] {
        let text = try String(contentsOf: file, encoding: .utf8)
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            var value = String(line[line.index(after: eq)...])
            if value.count >= 2, value.first == value.last, value.first == "'" || value.first == "\"" {
                value = String(value.dropFirst().dropLast())
            }
            env[String(line[..<eq]).trimmingCharacters(in: .whitespaces)] = value
        }
        return env
    }

    @discardableResult
    static func shell(_ program: String, _ args: [String], timeout: Double) -> (status: Int32, out: String) {
        runIsolated(program, args, timeout: timeout)
    }
}

/// Runs a program, its stdout and stderr into one text, killed after `timeout` seconds.
///
/// posix_spawn, not Foundation's Process:
/// - the test runner blocks SIGTERM and other signals, and a child inherits that mask, so an
///   Apache started under it would ignore `stop`'s SIGTERM; the child here starts with an empty
///   mask and default handlers;
/// - the child inherits no descriptor but its output: Foundation's Process learns that a child
///   ended when the socket it shares with that child reaches EOF, so a long-lived process that
///   inherited another child's socket (Apache, a test server) would hold up that child's wait;
/// - `waitpid` also works from an `atexit` handler, where Process's run-loop wait never returns,
///   and does not depend on the other children of this process ending.
@discardableResult
public func runIsolated(_ program: String, _ args: [String], timeout: Double) -> (status: Int32, out: String) {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-nc-\(UUID().uuidString)").path
    defer { unlink(out) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
    for fd in open where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t(), all = sigset_t()
    sigemptyset(&empty)
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([program] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, program, &actions, &attributes, argv, environ)
    guard spawned == 0 else { return (-1, "posix_spawn \(program): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() >= deadline {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            break
        }
        usleep(20_000)
    }
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    // WIFEXITED / WEXITSTATUS, which Swift does not import (macros).
    let exited = status & 0x7f == 0
    return (exited ? (status >> 8) & 0xff : -1, text)
}

/// One test's folder on the real server (`t-LABEL-XXXX/` under alice's root, made empty) and a
/// local scratch folder: mount it with `MountedServer`, check it with `client()`, count its
/// requests with `mark()`/`requests(since:)` (only requests under this folder, or not under any
/// user's files at all, such as capabilities and chunk uploads).
public final class NextcloudSpace: DAVServer, @unchecked Sendable {
    // @unchecked: every property is set in init and never changed.
    public let server: NextcloudServer
    /// The folder's name under the account root, e.g. `t-listing-1a2b3c`.
    public let folder: String
    public let dataDir: URL

    init(server: NextcloudServer, label: String) throws {
        self.server = server
        folder = "t-\(label)-\(UUID().uuidString.prefix(6).lowercased())"
        dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-nc-\(folder)")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        try server.client().mkcol(folder)
    }

    public var origin: String { server.origin }
    public var baseURL: String { server.davURL + folder + "/" }
    public var user: String { server.user }
    public var password: String { server.password }

    /// A client on this folder.
    public func client() throws -> WebDAVClient { try server.client(path: folder + "/") }

    public func mark() -> Int { server.mark() }

    /// Requests since `mark` made on this folder's files (the path under `/remote.php/dav/files/`
    /// starts with the folder).
    public func requests(since mark: Int) -> [NextcloudServer.LoggedRequest] {
        let prefix = "/remote.php/dav/files/\(user)/\(folder)"
        return server.requests(since: mark).filter { $0.path.hasPrefix(prefix) }
    }

    /// Removes the server folder (permanently, skipping the trash where the server allows) and
    /// the local scratch folder.
    public func remove() {
        try? server.client().delete(folder, permanently: true)
        try? FileManager.default.removeItem(at: dataDir)
    }
}

public struct NextcloudError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
