import Foundation

/// The fault-injecting proxy (`scripts/faultproxy/faultproxy.py`) as a real process on
/// 127.0.0.1, for tests that put faults between ncfs and a `TestServer`. A client reaches it
/// as a forward proxy (`http_proxy` = `proxyURL`, keeping the server's URL, so state folders
/// and catalog URLs are unchanged) or as a reverse proxy (`origin` + the server's path, when
/// started with an `upstream`). `stop()` (also run by `deinit`) ends exactly the process it started.
public final class FaultProxy: @unchecked Sendable {
    // @unchecked: `process` and `port` are set in init before the instance is shared, and
    // `process` is cleared only in `stop`, which tests call from one place.
    public let folder: URL
    public let logFile: URL
    public private(set) var port = 0
    private var process: Process?

    /// Starts the proxy with `rules` (see scripts/faultproxy/README.md for their keys) and
    /// waits until it listens. It exits by itself after `maxRuntime` seconds whatever happens.
    public init(upstream: String? = nil, rules: [[String: Any]] = [], maxRuntime: Double = 1800) throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-faultproxy-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        logFile = folder.appendingPathComponent("proxy.jsonl")
        let portFile = folder.appendingPathComponent("port")
        let rulesFile = folder.appendingPathComponent("rules.json")
        try JSONSerialization.data(withJSONObject: rules).write(to: rulesFile)

        var args = ["--port", "0", "--port-file", portFile.path, "--log", logFile.path, "--rules", rulesFile.path,
                    "--max-runtime", String(maxRuntime)]
        if let upstream { args += ["--upstream", upstream] }
        let started = try PythonService.start(script: "scripts/faultproxy/faultproxy.py", arguments: args, portFile: portFile,
                                              errorLog: folder.appendingPathComponent("proxy.stderr"),
                                              failure: { FaultProxyError.didNotStart($0) })
        process = started.process
        port = started.port
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Stops the proxy (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard let p = process else { return }
        process = nil
        PythonService.stop(p)
    }

    public enum FaultProxyError: Error { case didNotStart(String), control(String) }

    public var origin: String { "http://127.0.0.1:\(port)" }
    /// The value for a client's `http_proxy`.
    public var proxyURL: String { origin }

    /// Replaces every rule.
    public func setRules(_ rules: [[String: Any]]) throws { try control("rules", rules) }
    /// Appends rules after the present ones.
    public func addRules(_ rules: [[String: Any]]) throws { try control("rules/add", rules) }

    /// How many requests each rule has hit so far, in rule order (counted when the rule
    /// decides, before its action runs); nil when the proxy does not answer.
    public func ruleHits() -> [Int]? {
        guard let body = URLRequestLite(url: "\(origin)/__proxy/rules").get(),
              let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let rules = json["rules"] as? [[String: Any]] else { return nil }
        return rules.map { ($0["hits"] as? Int) ?? 0 }
    }

    private func control(_ route: String, _ rules: [[String: Any]]) throws {
        var request = URLRequestLite(url: "\(origin)/__proxy/\(route)")
        request.body = try JSONSerialization.data(withJSONObject: rules)
        let status = request.post()
        guard status == 200 else { throw FaultProxyError.control("\(route) → \(status)") }
    }

    // MARK: Log

    /// One request as the proxy logged it (see scripts/faultproxy/README.md).
    public struct Record: Decodable, Sendable {
        public var method: String
        public var path: String
        public var outcome: String
        public var status: Int?
        public var rule: Int?
        public var action: String?
    }

    /// Every request the proxy has finished so far, in order.
    public func records() -> [Record] {
        PythonService.records(Record.self, in: logFile)
    }

    // MARK: NCFS_TEST_FAULTS

    /// Rules from `NCFS_TEST_FAULTS`, or nil when it is unset or empty. The value is a
    /// comma-separated list of `KIND:RATE[:SEED]`, each hitting that share of all requests:
    /// - `5xx`: faults a client is expected to survive. Requests that may be repeated (GET, PUT,
    ///   PROPFIND, DELETE, …) get 500, 502, 503 or 504 (drawn with the seed); MOVE, COPY, MKCOL,
    ///   POST, LOCK and UNLOCK get only 503, because after a 500 nobody can tell whether they were
    ///   applied, and ncfs by design does not repeat them (docs/SEMANTICS.md: Retries) — the
    ///   operation fails with EIO, which no fault-free test expects.
    /// - `5xx-strict`: any of the four on every method.
    /// - a status code such as `503` or `429`; `reset` (connection reset instead of an answer);
    ///   `truncate` (half the body, then close).
    /// Example: `NCFS_TEST_FAULTS=5xx:0.1:7` fails 10 % of requests with a 5xx, reproducibly.
    public static func environmentRules() throws -> [[String: Any]]? {
        guard let value = ProcessInfo.processInfo.environment["NCFS_TEST_FAULTS"], !value.isEmpty else { return nil }
        return try value.split(separator: ",").flatMap { item -> [[String: Any]] in
            let parts = item.split(separator: ":").map(String.init)
            guard parts.count >= 2, let rate = Double(parts[1]), rate > 0, rate <= 1 else {
                throw FaultProxyError.control("NCFS_TEST_FAULTS item \(item): expected KIND:RATE[:SEED] with 0 < RATE <= 1")
            }
            var rule: [String: Any] = ["probability": rate, "count": -1, "seed": parts.count > 2 ? (Int(parts[2]) ?? 1) : 1,
                                       "note": "NCFS_TEST_FAULTS \(item)"]
            switch parts[0] {
            case "5xx":
                // Two rules by method, not one after the other: a request a rule does not draw
                // goes on to the next rule, so the second must not match the first's methods.
                var unrepeatable = rule
                unrepeatable["method"] = ["MOVE", "COPY", "MKCOL", "POST", "LOCK", "UNLOCK"]
                unrepeatable["status"] = 503
                rule["method"] = ["GET", "HEAD", "PUT", "DELETE", "PROPFIND", "PROPPATCH", "SEARCH", "OPTIONS", "REPORT"]
                rule["status"] = [500, 502, 503, 504]
                return [unrepeatable, rule]
            case "5xx-strict": rule["status"] = [500, 502, 503, 504]
            case "reset": rule["action"] = "reset"
            case "truncate": rule["action"] = "truncate"
            case let code where Int(code).map({ (400...599).contains($0) }) == true: rule["status"] = Int(code)!
            default: throw FaultProxyError.control("NCFS_TEST_FAULTS kind \(parts[0]): expected 5xx, 5xx-strict, a status code, reset or truncate")
            }
            return [rule]
        }
    }
}
