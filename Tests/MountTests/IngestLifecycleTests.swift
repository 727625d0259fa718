import Foundation
import TestSupport
import Testing

/// What happens to ingested items after they were persisted or failed: dedupe against
/// originals that were deleted on the server or live under another upload prefix; failed items
/// whose file is gone, skipped by backfill and cleared with `ncfs dismiss`.
@Suite("Ingest lifecycle: dedupe against the server, backfill and dismiss", .serialized, .timeLimit(.minutes(10)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"),
       .enabled(if: IngestHarness.missing == nil, "\(IngestHarness.missing ?? "")"))
struct IngestLifecycleTests {
    static let writeMethods: Set<String> = ["PUT", "MKCOL", "MOVE", "COPY", "DELETE", "PROPPATCH"]

    @Test("Same photos again while their originals exist: duplicates, no write request and at most one listing; after their folder is deleted on the server: uploaded again (the old items quarantined)")
    func dedupeNeedsTheOriginal() throws {
        let h = try IngestHarness(photos: 0, generated: 6)
        defer { h.stop() }
        let names = try FileManager.default.contentsOfDirectory(atPath: h.generated.path).sorted()
        #expect(names.count == 6)
        func drop(into mount: MountedServer) {
            let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", mount.path("incoming") + "/"], timeout: 120)
            #expect(copy.status == 0, "rsync: \(copy.out)")
        }
        func batch(_ items: [[String: Any]], after: Int) -> [[String: Any]] {
            items.filter { ($0["id"] as? Int ?? 0) > after }
        }
        func state(_ item: [String: Any]) -> String { item["state"] as? String ?? "" }

        // 1. First ingest.
        drop(into: h.mount)
        try h.waitUntilDone(total: 6, timeout: 120)
        let first = try h.items()
        #expect(first.count == 6 && first.allSatisfy { state($0) == "succeeded" }, "\(first.map { "\($0["name"]!) \(state($0)) \($0["persistError"] ?? "")" })")
        let lastFirst = first.compactMap { $0["id"] as? Int }.max() ?? 0
        let originalFolder = "pindeck/media-uploads/\(h.today)/original"

        // 2. The same photos while the originals are there: duplicates, nothing written, the
        // original folder listed at most once (not once per file).
        var mark = h.server.mark()
        drop(into: h.mount)
        try h.waitUntilDone(total: 12, timeout: 120)
        let second = batch(try h.items(), after: lastFirst)
        #expect(second.count == 6 && second.allSatisfy { state($0) == "duplicate" }, "\(second.map { "\($0["name"]!) \(state($0))" })")
        var requests = h.server.requests(since: mark)
        let writes = requests.filter { Self.writeMethods.contains($0.method) }
        #expect(writes.isEmpty, "write requests for duplicates: \(writes.map { "\($0.method) \($0.path)" })")
        let listings = requests.filter { $0.method == "PROPFIND" && $0.path.contains("/original") }
        #expect(listings.count <= 1, "the original folder was listed \(listings.count) times: \(listings.map { "\($0.path) depth \($0.depth ?? "-")" })")
        let lastSecond = second.compactMap { $0["id"] as? Int }.max() ?? 0

        // 3. The day folder deleted on the server, the same photos again: uploaded again.
        try h.server.client().delete("pindeck/media-uploads/\(h.today)", permanently: true)
        #expect(!FileManager.default.fileExists(atPath: h.server.filesDir.appendingPathComponent(originalFolder).path))
        mark = h.server.mark()
        drop(into: h.mount)
        try h.waitUntilDone(total: 18, timeout: 120)
        let all = try h.items()
        let third = batch(all, after: lastSecond)
        #expect(third.count == 6 && third.allSatisfy { state($0) == "succeeded" },
                "re-dropped after the server lost them: \(third.map { "\($0["name"]!) \(state($0)) \($0["persistError"] ?? "")" })")
        for item in third {
            let path = item["originalPath"] as? String ?? ""
            #expect(path.hasPrefix(originalFolder + "/"), "\(path)")
            let name = item["name"] as? String ?? ""
            #expect((try? IngestHarness.sha256(h.server.filesDir.appendingPathComponent(path))) == (try? IngestHarness.sha256(h.generated.appendingPathComponent(name))),
                    "\(name): not on the server at \(path)")
            #expect((item["derivatives"] as? [[String: Any]] ?? []).count == 4, "\(name): derivatives not made again")
        }
        requests = h.server.requests(since: mark)
        let depthOne = requests.filter { $0.method == "PROPFIND" && $0.path.contains("/original") && $0.depth == "1" }
        #expect(depthOne.count <= 2, "one listing per batch expected, got \(depthOne.count)")
        // The items whose originals were deleted are marked as such, not left "succeeded".
        let firstNow = all.filter { ($0["id"] as? Int ?? 0) <= lastFirst }
        #expect(firstNow.allSatisfy { state($0) == "quarantined" && ($0["quarantineReason"] as? String ?? "").contains("gone") },
                "\(firstNow.map { "\($0["name"]!) \(state($0))" })")
    }

    @Test("Photos ingested under one upload prefix, dropped again after a remount with another (-o upload_prefix=): uploaded under the new prefix, not recorded as duplicates of the old")
    func dedupeIsPerPrefix() throws {
        let h = try IngestHarness(photos: 0, generated: 4)
        defer { h.stop() }
        let names = try FileManager.default.contentsOfDirectory(atPath: h.generated.path).sorted()
        let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", h.mount.path("incoming") + "/"], timeout: 120)
        #expect(copy.status == 0, "rsync: \(copy.out)")
        try h.waitUntilDone(total: names.count, timeout: 120)
        let first = try h.items()
        #expect(first.count == names.count && first.allSatisfy { $0["state"] as? String == "succeeded" })
        let last = first.compactMap { $0["id"] as? Int }.max() ?? 0

        h.mount.unmount()
        let other = try MountedServer(h.server, options: ["state_dir=\(h.state.path)", "ingest_delay=0.3", "upload_prefix=elsewhere/media"],
                                      arguments: ["--time-zone", "UTC"])
        defer { other.unmount() }
        let again = run("/usr/bin/rsync", ["-a", h.generated.path + "/", other.path("incoming") + "/"], timeout: 120)
        #expect(again.status == 0, "rsync: \(again.out)")
        try h.waitUntilDone(total: 2 * names.count, timeout: 120)
        let second = try h.items().filter { ($0["id"] as? Int ?? 0) > last }
        #expect(second.count == names.count && second.allSatisfy { $0["state"] as? String == "succeeded" },
                "under a new prefix: \(second.map { "\($0["name"]!) \($0["state"]!) \($0["persistError"] ?? "")" })")
        for item in second {
            let name = item["name"] as? String ?? ""
            #expect(item["originalPath"] as? String == "elsewhere/media/\(h.today)/original/\(name)", "\(item["originalPath"] ?? "nil")")
            #expect(FileManager.default.fileExists(atPath: h.server.filesDir.appendingPathComponent("elsewhere/media/\(h.today)/original/\(name)").path),
                    "\(name) is not on the server under the new prefix")
        }
        #expect(other.unmount() == 0)
    }

    @Test("Failed items whose file was removed from incoming/: backfill skips them saying so (not failed again) and retries the rest; ncfs dismiss by id and by state removes them from ncfs status; succeeded, active and still-staged items are not dismissed")
    func backfillAndDismiss() throws {
        let h = try IngestHarness(photos: 0)
        defer { h.stop() }
        let incoming = h.mount.path("incoming")
        let state = ["--state-dir", h.state.path]
        // Refused in their bulk request, then 403 on their PUT.
        try h.server.control("fault", ["method": "BULK-PART", "path_contains": "bad-", "message": "injected", "count": -1])
        try h.server.control("fault", ["method": "PUT", "path_contains": "bad-", "status": 403, "count": -1])
        for (name, source) in [("bad-1.png", "alpha.png"), ("bad-2.png", "one-pixel.png"), ("bad-3.jpg", "grey.jpg")] {
            try Data(contentsOf: h.source.appendingPathComponent(source)).write(to: URL(fileURLWithPath: incoming + "/" + name))
        }
        try h.waitUntil(timeout: 60) { ($0["failed"] as? Int ?? 0) == 3 }
        // Two of them removed from incoming/ (their records stay, failed).
        #expect(unlink(incoming + "/bad-1.png") == 0 && unlink(incoming + "/bad-2.png") == 0)
        try h.server.control("clear", [:])
        func byName() throws -> [String: [String: Any]] {
            Dictionary(try h.items().map { ($0["name"] as! String, $0) }, uniquingKeysWith: { a, _ in a })
        }
        let before = try byName()

        let backfill = run(MountedServer.binary, ["backfill"] + state, errors: true)
        #expect(backfill.status == 0, "\(backfill.out)")
        #expect(backfill.out.contains("skipped item \(before["bad-1.png"]?["id"] as? Int ?? -1) bad-1.png: the staged copy is gone")
                && backfill.out.contains("bad-2.png: the staged copy is gone"), "\(backfill.out)")
        #expect(backfill.out.contains("1 failed item(s) rescheduled") && backfill.out.contains("2 skipped"), "\(backfill.out)")
        try h.waitUntilDone(total: 3, timeout: 60)
        var items = try byName()
        #expect(items["bad-3.jpg"]?["state"] as? String == "succeeded", "\(items["bad-3.jpg"] ?? [:])")
        for name in ["bad-1.png", "bad-2.png"] {
            #expect(items[name]?["state"] as? String == "failed")
            #expect(items[name]?["attempts"] as? Int == before[name]?["attempts"] as? Int, "\(name) was tried again")
            #expect(items[name]?["persistError"] as? String == before[name]?["persistError"] as? String, "\(items[name]?["persistError"] ?? "")")
        }

        // Refusals: a succeeded item, an unknown id, a state that is not final.
        let succeeded = items["bad-3.jpg"]?["id"] as? Int ?? -1
        let refused = run(MountedServer.binary, ["dismiss", String(succeeded), "999999"] + state, errors: true)
        #expect(refused.status == 1 && refused.out.contains("is succeeded") && refused.out.contains("999999: no such item"), "\(refused.out)")
        let pending = run(MountedServer.binary, ["dismiss", "--state", "pending"] + state, errors: true)
        #expect(pending.status == 2, "\(pending.out)")
        #expect(run(MountedServer.binary, ["dismiss"] + state, errors: true).status == 2)

        // By id: one failed item goes; status counts one failed.
        let one = items["bad-1.png"]?["id"] as? Int ?? -1
        let dry = run(MountedServer.binary, ["dismiss", "--dry-run", String(one)] + state, errors: true)
        #expect(dry.status == 0 && dry.out.contains("would dismiss item \(one) bad-1.png"), "\(dry.out)")
        #expect(try h.status()["failed"] as? Int == 2)
        let byID = run(MountedServer.binary, ["dismiss", String(one)] + state, errors: true)
        #expect(byID.status == 0 && byID.out.contains("dismissed item \(one) bad-1.png (failed)"), "\(byID.out)")
        #expect(try h.status()["failed"] as? Int == 1)

        // A failed item whose file is still in incoming/ is not dismissed by --state.
        try h.server.control("fault", ["method": "BULK-PART", "path_contains": "bad-4", "message": "injected", "count": -1])
        try h.server.control("fault", ["method": "PUT", "path_contains": "bad-4", "status": 403, "count": -1])
        try Data(contentsOf: h.source.appendingPathComponent("alpha.png")).write(to: URL(fileURLWithPath: incoming + "/bad-4.png"))
        try h.waitUntil(timeout: 60) { ($0["failed"] as? Int ?? 0) == 2 }

        // By state: the rest of the failed items whose files are gone.
        let all = run(MountedServer.binary, ["dismiss", "--state", "failed"] + state, errors: true)
        #expect(all.status == 0 && all.out.contains("bad-2.png (failed)") && all.out.contains("1 item(s) dismissed"), "\(all.out)")
        #expect(all.out.contains("bad-4.png: its file is still in incoming/bad-4.png"), "\(all.out)")
        let status = try h.status()
        #expect(status["failed"] as? Int == 1 && status["succeeded"] as? Int == 1, "\(status)")
        items = try byName()
        #expect(items["bad-1.png"] == nil && items["bad-2.png"] == nil && items["bad-4.png"] != nil, "\(items.keys.sorted())")
        let text = run(MountedServer.binary, ["status"] + state)
        #expect(text.out.contains("1 failed"), "\(text.out)")
    }

    @Test("The date folders ingest makes show through the mount at once, although their parent's listing was cached before (empty)")
    func newDateFoldersAreVisible() throws {
        let h = try IngestHarness(photos: 0)
        defer { h.stop() }
        let uploads = h.mount.path("pindeck/media-uploads")
        try FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: uploads).isEmpty)
        try Data(contentsOf: h.source.appendingPathComponent("alpha.png")).write(to: URL(fileURLWithPath: h.mount.path("incoming/seen.png")))
        try h.waitUntilDone(total: 1, timeout: 60)
        let listing = run("/usr/bin/find", [uploads, "-type", "f"], errors: true)
        #expect(listing.status == 0, "\(listing.out)")
        let found = Set(listing.out.split(separator: "\n").map { String($0.dropFirst(uploads.count + 1)) })
        for path in ["\(h.today)/original/seen.png", "\(h.today)/preview/seen-preview.png", "\(h.today)/low/seen-w320.webp",
                     "\(h.today)/high/seen-w768.webp", "\(h.today)/high/seen-w1280.webp"] {
            #expect(found.contains(path), "\(path) not visible through the mount: \(found.sorted())")
        }
    }
}
