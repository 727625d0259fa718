import Foundation
public import HTTPTransport
public import WebDAV

/// The bundled Nextcloud-compatible server (`scripts/testserver/ncserver.py`) as a real process
/// on 127.0.0.1, one per test that needs it, with its own data folder and request log.
/// `stop()` (also run by `deinit`) ends exactly the process it started.
public final class TestServer: @unchecked Sendable {
    // @unchecked: all mutable state (`process`) is set in `start` before the instance is shared
    // and only cleared in `stop`, which tests call from one place at the end.
    public let dataDir: URL
    public let logFile: URL
    public let user = "alice"
    public let password: String
    public private(set) var port: Int = 0
    private var process: Process?
    private let extraArguments: [String]
    private let ownsDataDir: Bool

    public static var repositoryRoot: URL {
        // Tests/TestSupport/TestServer.swift → repository root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The folder holding the built `ncfs` and `ncfs-derive` that mount tests run as subprocesses:
    /// `NCFS_TEST_BUILD_DIR` when set (scripts/sanitize points it at a sanitized build, such as
    /// `.build-asan/debug`), else the normal `.build/debug`.
    public static var buildDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["NCFS_TEST_BUILD_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        return repositoryRoot.appendingPathComponent(".build/debug")
    }

    /// The interpreter: `NCFS_TEST_PYTHON`, else the repository's `.venv`, else `python3`.
    static var python: String {
        // A bare name ("python3") is looked up on PATH through /usr/bin/env, like the default.
        if let p = ProcessInfo.processInfo.environment["NCFS_TEST_PYTHON"], p.contains("/") { return p }
        let venv = repositoryRoot.appendingPathComponent(".venv/bin/python3").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/env"
    }

    public init(arguments: [String] = [], dataDir: URL? = nil) throws {
        let dir = dataDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        self.dataDir = dir
        self.logFile = dir.appendingPathComponent("requests.jsonl")
        self.password = "app-" + UUID().uuidString.prefix(12).lowercased()
        self.extraArguments = arguments
        self.ownsDataDir = dataDir == nil
        try start()
    }

    deinit {
        stop()
        if ownsDataDir { removeData() }
    }

    /// Starts (or restarts, keeping the data) the server and waits until it listens.
    public func start() throws {
        let portFile = dataDir.appendingPathComponent("port")
        try? FileManager.default.removeItem(at: portFile)
        var env = ProcessInfo.processInfo.environment
        env["NCSERVER_PASSWORD"] = password
        let started = try PythonService.start(
            script: "scripts/testserver/ncserver.py",
            arguments: ["--data", dataDir.path, "--port", port == 0 ? "0" : String(port), "--port-file", portFile.path,
                        "--user", user, "--log", logFile.path, "--control"] + extraArguments,
            environment: env, portFile: portFile, errorLog: dataDir.appendingPathComponent("server.stderr"),
            failure: { TestServerError.didNotStart($0) })
        process = started.process
        port = started.port
    }

    /// Stops the server process (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard let p = process else { return }
        process = nil
        PythonService.stop(p)
    }

    /// Removes the data folder (call after `stop`).
    public func removeData() { try? FileManager.default.removeItem(at: dataDir) }

    public enum TestServerError: Error { case didNotStart(String), control(String) }

    public var origin: String { "http://127.0.0.1:\(port)" }
    public var baseURL: String { "\(origin)/remote.php/dav/files/\(user)/" }
    public var credentials: Credentials { Credentials(user: user, password: password) }
    /// The user's files on disk, for checks that bypass WebDAV.
    public var filesDir: URL { dataDir.appendingPathComponent("files/\(user)") }

    /// A client on this server with a fast retry policy so fault tests stay short.
    public func client(retry: RetryPolicy = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(20), maxDelay: .milliseconds(200), budget: .seconds(20)),
                       path: String = "") throws -> WebDAVClient {
        try testClient(baseURL + path, credentials, retry: retry, stallTimeout: .seconds(5))
    }

    // MARK: Request log

    public struct LoggedRequest: Decodable, Sendable {
        public var method: String
        public var path: String
        public var status: Int
        public var depth: String?
        public var range: String?
        /// For a bulk upload (`POST …/dav/bulk`): the parts it stored, by `X-File-Path`.
        public var stored: [String]?
    }

    /// Every request the server has answered so far, in order.
    public func requests() -> [LoggedRequest] {
        PythonService.records(LoggedRequest.self, in: logFile)
    }

    /// The number of requests logged so far, once the log has settled: the mark to pass to
    /// `requests(since:)`.
    public func mark() -> Int { requests(since: 0).count }

    /// Requests logged after `mark` (a count from `requests().count`). The server writes its log
    /// line after the response has gone out, so this waits until the log has been quiet for
    /// 150 ms (at most 3 s) before reading it.
    public func requests(since mark: Int) -> [LoggedRequest] {
        waitUntilQuiet(logFile, quiet: 0.15, limit: 3)
        return Array(requests().dropFirst(mark))
    }

    // MARK: Fault injection (the server's /__control API)

    public func control(_ route: String, _ json: [String: Any]) throws {
        var request = URLRequestLite(url: "\(origin)/__control/\(route)")
        request.body = try JSONSerialization.data(withJSONObject: json)
        let status = request.post()
        guard status == 200 || status == 204 else { throw TestServerError.control("\(route) → \(status)") }
    }

    /// The next `count` requests matching get `status` (or `action`: "reset", "delay", "stall").
    public func fault(method: String = "*", pathContains: String = "", status: Int? = nil, action: String? = nil,
                      count: Int = 1, seconds: Double? = nil, afterBytes: Int? = nil) throws {
        var json: [String: Any] = ["method": method, "path_contains": pathContains, "count": count]
        if let status { json["status"] = status }
        if let action { json["action"] = action }
        if let seconds { json["seconds"] = seconds }
        if let afterBytes { json["after_bytes"] = afterBytes }
        try control("fault", json)
    }
}

/// A WebDAV client for a test's own checks of a server, with the given retries and stall timeout.
func testClient(_ url: String, _ credentials: Credentials, retry: RetryPolicy, stallTimeout: Duration) throws -> WebDAVClient {
    var config = HTTPClientConfiguration(credentials: credentials)
    config.retry = retry
    config.stallTimeout = stallTimeout
    return try WebDAVClient(baseURL: url, http: HTTPClient(configuration: config))
}

/// Waits until `file` (a request log) has not grown for `quiet` seconds, at most `limit`
/// seconds: servers write a request's line after its answer has gone out.
func waitUntilQuiet(_ file: URL, quiet: TimeInterval, limit: TimeInterval) {
    var last = -1
    var quietSince = Date()
    let deadline = Date().addingTimeInterval(limit)
    while Date() < deadline {
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0
        if size != last { last = size; quietSince = Date() }
        else if Date().timeIntervalSince(quietSince) >= quiet { break }
        usleep(20_000)
    }
}

/// A blocking POST to the control API with retries off, so a fault set up for the code under
/// test is never consumed by the set-up itself.
struct URLRequestLite {
    var url: String
    var body = Data()

    /// The body of a GET, or nil when it fails.
    func get() -> [UInt8]? {
        let client = HTTPClient(configuration: HTTPClientConfiguration())
        let request = HTTPRequest(method: "GET", url: url, headers: [:], body: .bytes([]))
        guard let response = try? client.perform(request, retry: .noRetries), response.status == 200 else { return nil }
        return response.body
    }

    func post() -> Int {
        let client = HTTPClient(configuration: HTTPClientConfiguration())
        let request = HTTPRequest(method: "POST", url: url, headers: ["Content-Type": "application/json"], body: .bytes(Array(body)))
        return (try? client.perform(request, retry: .noRetries).status) ?? -1
    }
}
