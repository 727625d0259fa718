import Foundation
import TestSupport

/// `ncfs mount` of a test server (the emulator or a folder of a real Nextcloud), run as a subprocess (the built `ncfs` in
/// `TestServer.buildDirectory`) so a kernel wait can never deadlock the test process. `unmount()` (also from `deinit`) ends it
/// in every outcome: `fusermount3 -u`, then SIGKILL and a lazy unmount if it lingers.
///
/// With a `FaultProxy`, the daemon's requests go through it (`http_proxy`; the URL stays the
/// server's, so state folder, catalog URLs and `runNCFS` are unchanged). With
/// `NCFS_TEST_FAULTS` set (see `FaultProxy.environmentRules`), every mount of a plain-HTTP
/// server that was given no proxy gets one of its own with those rules, stopped with the daemon.
final class MountedServer: @unchecked Sendable {
    // @unchecked: `process` and `ownedProxy` are set in init and cleared once in `unmount`/`kill`,
    // called from the test's thread.
    let server: any DAVServer
    let mountpoint: URL
    private var process: Process?
    let log: URL
    /// The proxy between the daemon and the server, if any.
    let proxy: FaultProxy?
    private var ownedProxy: FaultProxy?

    static var binary: String { TestServer.buildDirectory.appendingPathComponent("ncfs").path }

    /// `options` go in as `-o` options, `arguments` as they are (flags such as `--time-zone UTC`).
    init(_ server: any DAVServer, options: [String] = [], arguments: [String] = [], environment: [String: String] = [:],
         proxy: FaultProxy? = nil) throws {
        self.server = server
        if proxy == nil, server.origin.hasPrefix("http://"), let rules = try FaultProxy.environmentRules() {
            ownedProxy = try FaultProxy(rules: rules)
        }
        self.proxy = proxy ?? ownedProxy
        mountpoint = server.dataDir.appendingPathComponent("mnt")
        log = server.dataDir.appendingPathComponent("mount.log")
        try FileManager.default.createDirectory(at: mountpoint, withIntermediateDirectories: true)
        guard FileManager.default.isExecutableFile(atPath: MountedServer.binary) else {
            throw MountError("\(MountedServer.binary) is missing: run `swift build` first")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: MountedServer.binary)
        p.arguments = ["mount", "--url", server.baseURL, "--user", server.user, mountpoint.path] + options.flatMap { ["-o", $0] } + arguments
            + (ProcessInfo.processInfo.environment["NCFS_TEST_VERBOSE"] != nil ? ["--verbose"] : [])
        var env = ProcessInfo.processInfo.environment
        env["NEXTCLOUD_WEBDAV_APP_PASSWORD"] = server.password
        env["XDG_CONFIG_HOME"] = server.dataDir.path
        env["XDG_CACHE_HOME"] = server.dataDir.path
        env["XDG_STATE_HOME"] = server.dataDir.path
        if let through = self.proxy {
            env["http_proxy"] = through.proxyURL  // libcurl reads only the lower-case name for http
            env["no_proxy"] = nil
            env["NO_PROXY"] = nil
        }
        env.merge(environment) { _, new in new }
        p.environment = env
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if MountedServer.isMounted(mountpoint.path) { return }
            if !p.isRunning { break }
            usleep(50_000)
        }
        unmount()
        throw MountError("mount did not come up: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    deinit { unmount() }

    static func isMounted(_ path: String) -> Bool {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first == Substring(path) }
    }

    /// Unmounts and returns the daemon's exit status (nil if it had to be killed).
    @discardableResult
    func unmount() -> Int32? {
        guard let p = process else { return nil }
        process = nil
        _ = run("/usr/bin/fusermount3", ["-u", mountpoint.path], timeout: 10)
        // The daemon drains pending uploads after the unmount (up to its 60 s drain timeout).
        let deadline = Date().addingTimeInterval(90)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            Glibc.kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            _ = run("/usr/bin/fusermount3", ["-u", "-z", mountpoint.path], timeout: 10)
            stopOwnedProxy()
            return nil
        }
        // Already exited, so this returns at once; it is what breaks corelibs Foundation's
        // Process ↔ run-loop-source cycle (otherwise every mount leaks its Process).
        p.waitUntilExit()
        stopOwnedProxy()
        return p.terminationStatus
    }

    private func stopOwnedProxy() {
        ownedProxy?.stop()
        ownedProxy = nil
    }

    /// Ends the daemon with SIGKILL (a crash), then detaches the dead mount.
    func kill() {
        guard let p = process else { return }
        process = nil
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        _ = run("/usr/bin/fusermount3", ["-u", "-z", mountpoint.path], timeout: 10)
        stopOwnedProxy()
    }

    /// The daemon's last warnings and errors (for failure messages).
    var logTail: String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("warning") || $0.contains("error") }.suffix(10).joined(separator: "\n")
    }

    func path(_ relative: String) -> String { mountpoint.appendingPathComponent(relative).path }
}

struct MountError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a program with a time limit (SIGKILL after `timeout`); returns status and stdout (with
/// stderr after it when `errors`). `environment` is added to this process's.
func run(_ program: String, _ args: [String], timeout: Double = 60, environment: [String: String] = [:],
         errors: Bool = false) -> (status: Int32, out: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-run-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: out) }
    guard let handle = try? FileHandle(forWritingTo: out) else { return (-1, "") }
    p.standardOutput = handle
    p.standardError = errors ? handle : FileHandle.nullDevice
    do { try p.run() } catch { return (-1, "\(error)") }
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    try? handle.close()
    return (p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
}



