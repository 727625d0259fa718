import Foundation

/// One of our Python scripts run as a loopback service (the test server, the fault proxy): it
/// writes the port it listens on to a file once it is ready. Both are started and stopped here.
enum PythonService {
    /// Starts `script` (a path in the repository) with `arguments`, its stderr into `errorLog`,
    /// and waits up to 20 s for a port in `portFile`. On failure the process is stopped and the
    /// error `failure` makes of its stderr is thrown.
    static func start(script: String, arguments: [String], environment: [String: String]? = nil, portFile: URL, errorLog: URL,
                      failure: (String) -> any Error) throws -> (process: Process, port: Int) {
        let path = TestServer.repositoryRoot.appendingPathComponent(script).path
        let python = TestServer.python
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = (python == "/usr/bin/env" ? ["python3", path] : [path]) + arguments
        if let environment { p.environment = environment }
        p.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: errorLog.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: errorLog)
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (p, n)
            }
            if !p.isRunning { break }
            usleep(20_000)
        }
        let stderr = (try? String(contentsOf: errorLog, encoding: .utf8)) ?? ""
        stop(p)
        throw failure(stderr)
    }

    /// The records of a JSON-lines log (both services log one request per line), in order;
    /// a line that does not decode (one being written) is left out.
    static func records<T: Decodable>(_ type: T.Type, in log: URL) -> [T] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        let decoder = JSONDecoder()
        return text.split(separator: "\n").compactMap { try? decoder.decode(T.self, from: Data($0.utf8)) }
    }

    /// SIGTERM, then SIGKILL after 5 s; waits for the process either way.
    static func stop(_ p: Process) {
        if p.isRunning {
            p.terminate()
            let deadline = Date().addingTimeInterval(5)
            while p.isRunning && Date() < deadline { usleep(10_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
    }
}
