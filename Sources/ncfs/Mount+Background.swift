import Foundation
import SystemPackage

/// `ncfs mount --background`: mount(8) waits for its helper to exit and then expects the
/// filesystem to be there, so the helper must return exactly when the mount is live — or
/// fail with the reason. The process starts itself again without `--background` (a fresh
/// process through Foundation's `Process`: fork() without exec is unsafe in a multi-threaded
/// Swift process) and waits for that daemon to send `READY=1` (or `STATUS=<error>` and exit) to
/// a notify socket of its own.
///
/// The daemon's standard input, output and error are /dev/null or the `-o log=PATH` file, never
/// the caller's: a caller that reads them to the end (systemd collecting mount(8)'s output)
/// would wait for the daemon's whole life. It keeps the process group of its own that
/// `Process` gives every child, so a Ctrl-C or hang-up of the terminal that ran mount(8) does
/// not reach it. It gets no session of its own: `setsid(1)` forks when its caller leads a
/// process group, as every `Process` child does, and the daemon's pid would be lost; the
/// daemon never opens a terminal, so it needs none.
extension Mount {
    /// How long the daemon may take to report "mounted": longer than its own start-up check
    /// can take (the root listing gives up within the metadata client's 60 s retry budget),
    /// shorter than systemd's default 90 s mount timeout, so a boot-time mount fails here,
    /// with the reason, rather than being killed without one.
    static let backgroundDeadline: Double = 80

    func startInBackground(log: String?) throws {
        let listener = try NotifyListener()
        defer { listener.remove() }
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        daemon.arguments = CommandLine.arguments.dropFirst().filter { $0 != "--background" }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = listener.path
        daemon.environment = environment
        daemon.standardInput = FileHandle.nullDevice
        let output = try log.map(Mount.openLog) ?? FileHandle.nullDevice
        daemon.standardOutput = output
        daemon.standardError = output
        try daemon.run()

        var status: String?
        let deadline = Date().addingTimeInterval(Mount.backgroundDeadline)
        while true {
            // Sampled before draining the socket: whatever an exited daemon sent is queued by now.
            let exited = !daemon.isRunning
            for (key, value) in listener.receive(timeout: 0.1) {
                if key == "READY" && value == "1" { return }
                if key == "STATUS" { status = value }
            }
            let seeLog = log.map { " (log: \($0))" } ?? ""
            if exited {
                let signalled = daemon.terminationReason == .uncaughtSignal
                let code = signalled || daemon.terminationStatus == 0 ? 1 : daemon.terminationStatus
                let reason = status ?? (signalled ? "the mount daemon was killed by signal \(daemon.terminationStatus)"
                                                  : "the mount daemon exited with status \(daemon.terminationStatus) before mounting")
                throw CLIError(message: reason + seeLog, code: code)
            }
            if Date() > deadline {
                Mount.stop(daemon)
                throw CLIError(message: "not mounted after \(Int(Mount.backgroundDeadline)) s; stopped the mount daemon" + seeLog, code: 1)
            }
        }
    }

    /// SIGTERM (before mounting it ends the daemon; after, it unmounts first), SIGKILL if the
    /// daemon is still there 10 s later.
    static func stop(_ daemon: Process) {
        daemon.terminate()
        let deadline = Date().addingTimeInterval(10)
        while daemon.isRunning && Date() < deadline { usleep(20_000) }
        if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
        daemon.waitUntilExit()
    }

    /// Opens the log for appending (created 0600), so a remount keeps the earlier messages.
    static func openLog(_ path: String) throws -> FileHandle {
        do {
            let fd = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.append, .create, .closeOnExec],
                                             permissions: [.ownerReadWrite])
            return FileHandle(fileDescriptor: fd.rawValue, closeOnDealloc: true)
        } catch {
            throw CLIError(message: "cannot open the log \(path): \(error)", code: 1)
        }
    }
}
