import Foundation
import Synchronization
import TestSupport
import Testing

/// A hung server: a caller waiting on the mount can be interrupted (its request is cancelled and
/// answered EINTR), and no request waits longer than the mount's request time limit (30 s).
@Suite("Interrupts and the request time limit (hung server)", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct InterruptTests {
    static func server() throws -> TestServer {
        try populatedServer { files in
            try write(files.appendingPathComponent("folder/a.txt"), Array("a".utf8))
            try write(files.appendingPathComponent("other/b.txt"), Array("b".utf8))
        }
    }

    @Test("timeout -s INT 3 ls of a folder whose listing the server stalls ends within a few seconds, and the mount works afterwards")
    func interruptedListing() throws {
        let server = try Self.server()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        try server.fault(method: "PROPFIND", pathContains: "/folder", action: "stall", count: 1, seconds: 90)
        let started = Date()
        // Through a clean signal mask: the test runner blocks SIGINT, and children inherit that
        // (a shell's `timeout -s INT 3 ls` has it unblocked).
        let unmasked = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])"
        let interrupted = run("/usr/bin/python3", ["-c", unmasked, "/usr/bin/timeout", "-s", "INT", "3", "/bin/ls", mount.path("folder")],
                              timeout: 60)
        let took = Date().timeIntervalSince(started)
        #expect(interrupted.status == 124, "ls was stopped by timeout's SIGINT: \(interrupted)")
        #expect(took < 8, "the interrupted ls ended in \(took) s")
        // The mount still answers, and the folder lists once the server does.
        let again = run("/bin/ls", [mount.path("folder")], timeout: 20)
        #expect(again.status == 0 && again.out == "a.txt\n", "\(again)")
        #expect(run("/bin/ls", [mount.path("other")], timeout: 20).out == "b.txt\n")
        #expect(!mount.logTail.contains("request(s) still running"), "\(mount.logTail)")
    }

    @Test("a thread blocked in opendir on a stalled listing gets EINTR when signalled")
    func eintr() throws {
        let server = try Self.server()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        try server.fault(method: "PROPFIND", pathContains: "/folder", action: "stall", count: 1, seconds: 90)

        // A handler that does nothing, without SA_RESTART: the blocked call returns EINTR.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        var previous = sigaction()
        sigaction(SIGUSR1, &action, &previous)
        defer { sigaction(SIGUSR1, &previous, nil) }

        let path = mount.path("folder")
        let result = Mutex<(thread: pthread_t?, errno: Int32?, seconds: Double?)>((nil, nil, nil))
        let thread = Thread {
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGUSR1)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            result.withLock { $0.thread = pthread_self() }
            let started = Date()
            let dir = opendir(path)
            let code = dir == nil ? errno : 0
            if let dir { closedir(dir) }
            result.withLock { $0.errno = code; $0.seconds = Date().timeIntervalSince(started) }
        }
        thread.start()
        // Let it block on the stalled listing, then signal it (again, until it has returned).
        usleep(1_500_000)
        let deadline = Date().addingTimeInterval(20)
        while result.withLock({ $0.errno == nil }) && Date() < deadline {
            if let t = result.withLock({ $0.thread }) { pthread_kill(t, SIGUSR1) }
            usleep(500_000)
        }
        let (_, code, seconds) = result.withLock { $0 }
        #expect(code == EINTR, "opendir failed with \(code.map { String(cString: strerror($0)) } ?? "nothing yet")")
        #expect((seconds ?? 99) < 6, "returned after \(seconds ?? -1) s")
        #expect(run("/bin/ls", [path], timeout: 20).out == "a.txt\n")
    }

    @Test("without an interrupt, a listing the server stalls fails with EIO at the 30 s request limit (not after the 60 s retry budget)")
    func requestTimeLimit() throws {
        let server = try Self.server()
        defer { server.stop() }
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        try server.fault(method: "PROPFIND", pathContains: "/folder", action: "stall", count: 3, seconds: 90)
        let started = Date()
        let stalled = run("/bin/ls", [mount.path("folder")], timeout: 80, errors: true)
        let took = Date().timeIntervalSince(started)
        #expect(stalled.status != 0 && stalled.out.contains("Input/output error"), "\(stalled)")
        #expect(took >= 28 && took < 40, "failed after \(took) s")
        #expect(run("/bin/ls", [mount.path("other")], timeout: 20).out == "b.txt\n")
    }
}
