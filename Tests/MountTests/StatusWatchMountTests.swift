import Foundation
import TestSupport
import Testing

/// `ncfs status --watch` driven as a user runs it, beside a real ingest.
@Suite("ncfs status --watch on a real ingest", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"),
       .enabled(if: IngestHarness.missing == nil, "\(IngestHarness.missing ?? "")"))
struct StatusWatchMountTests {
    @Test("Five files dropped after an earlier failure: --watch counts n/5 throughout, never goes back, leaves the old failure out, and ends by itself with 'done: 5 item(s)'; --count stops it early; with nothing to do it says so")
    func watchFiveFiles() throws {
        let h = try IngestHarness(photos: 0, generated: 5)
        defer { h.stop() }
        let state = ["--state-dir", h.state.path]
        // An earlier batch with a failure.
        // (Its bulk request refuses it first; then its PUT gets the 403.)
        try h.server.control("fault", ["method": "BULK-PART", "path_contains": "old.png", "message": "injected", "count": -1])
        try h.server.control("fault", ["method": "PUT", "path_contains": "old.png", "status": 403, "count": -1])
        try Data(contentsOf: h.source.appendingPathComponent("alpha.png")).write(to: URL(fileURLWithPath: h.mount.path("incoming/old.png")))
        try h.waitUntil(timeout: 60) { ($0["failed"] as? Int ?? 0) == 1 }
        try h.server.control("clear", [:])
        sleep(6)  // the queue idle for longer than a batch's gap

        // The new batch, slowed down so the watch sees it in progress.
        try h.server.control("fault", ["method": "POST", "path_contains": "/dav/bulk", "action": "delay", "seconds": 1, "count": -1])
        let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", h.mount.path("incoming") + "/"], timeout: 60)
        #expect(copy.status == 0, "\(copy.out)")

        let short = run(MountedServer.binary, ["status", "--watch", "--count", "2", "--interval", "0.2"] + state, timeout: 30, errors: true)
        #expect(short.status == 0, "\(short.out)")
        #expect(short.out.split(separator: "\n").count == 2 && short.out.contains("/5 done"), "--count 2:\n\(short.out)")

        let watch = run(MountedServer.binary, ["status", "--watch", "--interval", "0.3"] + state, timeout: 120, errors: true)
        #expect(watch.status == 0, "\(watch.out)")
        let lines = watch.out.split(separator: "\n").map(String.init)
        let progress = lines.filter { $0.hasPrefix("[") }
        #expect(!progress.isEmpty, "\(watch.out)")
        var last = -1
        for line in progress {
            guard let range = line.range(of: #"\] (\d+)/(\d+) done"#, options: .regularExpression) else {
                Issue.record("unexpected line: \(line)")
                continue
            }
            let numbers = line[range].dropFirst(2).split(separator: " ").first!.split(separator: "/").compactMap { Int($0) }
            #expect(numbers.count == 2 && numbers[1] == 5, "the batch is 5 files: \(line)")
            #expect(numbers[0] >= last, "went back: \(line)")
            last = numbers[0]
            #expect(!line.contains("failed"), "the earlier failure is mixed in: \(line)")
        }
        #expect(lines.last?.hasPrefix("done: 5 item(s)") == true && lines.last?.contains("5 persisted") == true, "\(watch.out)")
        // Whenever an ETA is shown there is a rate beside it.
        #expect(progress.allSatisfy { !$0.contains("left") || $0.contains("/s") }, "\(watch.out)")

        try h.server.control("clear", [:])
        let idle = run(MountedServer.binary, ["status", "--watch"] + state, timeout: 30, errors: true)
        #expect(idle.status == 0 && idle.out.hasPrefix("nothing in progress; the last batch: 5 item(s)"), "\(idle.out)")
        let json = try h.status()
        let batch = json["batch"] as? [String: Any] ?? [:]
        #expect(batch["total"] as? Int == 5 && batch["in_progress"] as? Bool == false && batch["failed"] as? Int == 0, "\(batch)")
        #expect(json["failed"] as? Int == 1, "the catalog's totals still count the old failure: \(json)")
    }
}
