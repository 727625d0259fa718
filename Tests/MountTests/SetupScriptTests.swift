import Foundation
import TestSupport
import Testing

/// `scripts/setup` when another apt or dpkg run holds the package locks: it waits (bounded,
/// saying so) instead of failing at once. Runs a copy of the script in a scratch folder with
/// stand-ins for the commands it calls (`dpkg-query` reports every package missing, `id` says
/// root, `apt-get` fails with apt's lock error until a given moment), so nothing is installed.
/// Each test takes a few seconds alone; the limit is wide because in a full run on a loaded
/// machine both once waited over 120 s before they finished (bounded by `runIsolated`'s 60 s).
@Suite("scripts/setup waits for the package lock", .serialized, .timeLimit(.minutes(5)))
struct SetupScriptTests {
    @Test("a lock held for 3 s: setup says it waits, then updates and installs")
    func waitsForLock() throws {
        let stage = try Stage(lockedFor: 3)
        defer { stage.remove() }
        let started = Date()
        let result = stage.runSetup()
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status == 0, "\(result.out)")
        #expect(result.out.contains("waiting for it, up to 600 s"), "says it waits: \(result.out)")
        #expect(result.out.components(separatedBy: "holds the package lock").count == 2, "says it once: \(result.out)")
        #expect(seconds >= 3, "waited for the lock: \(seconds) s")
        let calls = stage.calls
        #expect(calls.last?.contains("install -y -qq") == true, "installed once the lock was free: \(calls)")
        #expect(calls.filter { $0.contains(" update") }.count >= 2, "update retried: \(calls)")
        #expect(calls.allSatisfy { $0.contains("-o DPkg::Lock::Timeout=") }, "apt waits for the dpkg lock too: \(calls)")
    }

    @Test("a lock that stays: setup gives up after the bound, with apt's message and what to do")
    func givesUp() throws {
        let stage = try Stage(lockedFor: 3600)
        defer { stage.remove() }
        let started = Date()
        let result = stage.runSetup(environment: ["NCFS_SETUP_LOCK_WAIT": "3"])
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status != 0)
        #expect(result.out.contains("Could not get lock") && result.out.contains("still holds the package lock after 3 s"), "\(result.out)")
        #expect(seconds >= 3 && seconds < 20, "bounded: \(seconds) s")
        #expect(!stage.calls.contains { $0.contains("install") }, "no install without the lock")
    }

    /// A copy of scripts/setup in a scratch folder, and a folder of stand-in commands first on PATH.
    struct Stage {
        let folder: URL
        var bin: URL { folder.appendingPathComponent("bin") }
        var callLog: URL { folder.appendingPathComponent("apt-calls") }

        init(lockedFor seconds: Int) throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-setup-\(UUID().uuidString.prefix(8))")
            let scripts = folder.appendingPathComponent("scripts")
            try FileManager.default.createDirectory(at: scripts, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: TestServer.repositoryRoot.appendingPathComponent("scripts/setup"),
                                             to: scripts.appendingPathComponent("setup"))
            // `date +%s` counts whole seconds: rounding up holds the lock for at least `seconds`.
            let unlockAt = Int(Date().timeIntervalSince1970.rounded(.up)) + seconds
            try stub("dpkg-query", "exit 1")
            try stub("id", "echo 0")
            try stub("swift", "exit 0")
            try stub("python3", #"[ "$1 $2" = "-m venv" ] && mkdir -p "$3/bin" && printf '#!/bin/sh\nexit 0\n' > "$3/bin/python3" && chmod +x "$3/bin/python3""#)
            try stub("apt-get", """
                echo "apt-get $*" >> '\(callLog.path)'
                if [ "$(date +%s)" -lt \(unlockAt) ]; then
                    echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
                    echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
                    exit 100
                fi
                exit 0
                """)
        }

        private func stub(_ name: String, _ body: String) throws {
            let path = bin.appendingPathComponent(name).path
            try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
        }

        /// Runs the copy; stdout and stderr together.
        func runSetup(environment: [String: String] = [:]) -> (status: Int32, out: String) {
            var env = ["PATH": bin.path + ":/usr/bin:/bin", "HOME": folder.path]
            env.merge(environment) { $1 }
            // Not Foundation's Process: its wait also waits for whatever process another test
            // started at the same moment (they share the child-exit socket), minutes at times.
            return runIsolated("/usr/bin/env", ["-i"] + env.map { "\($0.key)=\($0.value)" }
                               + ["bash", folder.appendingPathComponent("scripts/setup").path], timeout: 60)
        }

        var calls: [String] {
            ((try? String(contentsOf: callLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func remove() { try? FileManager.default.removeItem(at: folder) }
    }
}
