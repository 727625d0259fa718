import Foundation
import TestSupport
import Testing

/// incoming/ through a real mount, the real test server and the real ncfs-derive (libvips):
/// bulk rsync of real photographs and edge cases, idempotent re-runs, name collisions, kill -9
/// at several points, a flaky and a vanishing server, backfill and quarantine.
@Suite("Ingest through incoming/ on a real FUSE mount", .serialized, .timeLimit(.minutes(15)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"),
       .enabled(if: IngestHarness.missing == nil, "\(IngestHarness.missing ?? "")"))
struct IngestTests {
    @Test("rsync -a of 200+ photos and edge cases: every item persisted at its date path byte for byte, four derivatives of the right widths (decoded with libvips), orientation applied; the same rsync again uploads nothing")
    func bulkRsync() throws {
        let h = try IngestHarness(photos: 180)
        defer { h.stop() }
        // The 200 MB non-image (random bytes: no loader may claim it, and it goes up in chunks).
        try IngestHarness.randomFile(h.source.appendingPathComponent("big random.bin"), bytes: 200 << 20)
        let files = try h.sourceFiles()
        #expect(files.count >= 200)

        let mark = h.server.mark()
        let rsync = run("/usr/bin/rsync", ["-a", h.source.path + "/", h.mount.path("incoming") + "/"], timeout: 600)
        #expect(rsync.status == 0, "rsync: \(rsync.out)")
        try h.waitUntilDone(total: files.count, timeout: 600)

        let items = try h.items()
        #expect(items.count == files.count)
        #expect(items.allSatisfy { $0["state"] as? String == "succeeded" }, "\(items.filter { $0["state"] as? String != "succeeded" }.map { "\($0["name"]!): \($0["persistError"] ?? "")" })")
        let requests = h.server.requests(since: mark)
        let temporaryPuts = requests.filter { $0.method == "PUT" && ($0.path.split(separator: "/").last ?? "").hasPrefix(".") }
        #expect(temporaryPuts.isEmpty, "rsync temp names uploaded: \(temporaryPuts.map(\.path))")

        let day = h.today
        // Derivatives are named by stem, so of n sources sharing one (alpha.png, alpha.webp,
        // alpha.tiff) the later ones get "alpha (2).ext" … "alpha (n).ext"; other names are kept.
        let stems = Dictionary(grouping: files, by: IngestHarness.stem)
        let finals = items.compactMap { ($0["originalPath"] as? String)?.split(separator: "/").last.map(String.init) }
        #expect(Set(finals.map(IngestHarness.stem)).count == finals.count, "two originals share a stem: their derivatives collide")
        for item in items {
            let name = item["name"] as! String
            let source = h.source.appendingPathComponent(name)
            let original = item["originalPath"] as? String ?? ""
            let final = String(original.split(separator: "/").last ?? "")
            let sharing = stems[IngestHarness.stem(name)]?.count ?? 1
            #expect(original == "pindeck/media-uploads/\(day)/original/\(final)"
                    && (final == name || (2...max(2, sharing)).contains { final == IngestHarness.numbered(name, $0) }),
                    "\(name) → \(original)")
            #expect(try IngestHarness.sha256(h.server.filesDir.appendingPathComponent(original)) == IngestHarness.sha256(source),
                    "\(name): the server's original differs from the source")
            let derivatives = item["derivatives"] as? [[String: Any]] ?? []
            switch h.manifest[name]?["expected"] as? String {
            case "image":
                let width = h.manifest[name]!["width"] as! Int, height = h.manifest[name]!["height"] as! Int
                #expect(derivatives.count == 4, "\(name): \(derivatives.count) derivatives, \(item["derivativeError"] ?? "")")
                for derivative in derivatives {
                    let path = derivative["path"] as! String
                    let (w, h2) = try IngestHarness.dimensions(h.server.filesDir.appendingPathComponent(path))
                    let kind = derivative["kind"] as! String
                    switch kind {
                    case "preview":
                        #expect(max(w, h2) == min(2048, max(width, height)), "\(name) preview \(w)×\(h2) of \(width)×\(height)")
                        #expect(path == "pindeck/media-uploads/\(day)/preview/\(IngestHarness.stem(final))-preview.\(IngestHarness.previewExtension(name))", "\(path)")
                    default:
                        let target = Int(kind.dropFirst())!
                        #expect(w == min(target, width), "\(name) \(kind): \(w) wide of \(width)")
                        #expect(path.hasSuffix("/\(IngestHarness.stem(final))-\(kind).webp"), "\(path)")
                        #expect(path.contains(target == 320 ? "/low/" : "/high/"))
                    }
                    // Orientation applied, aspect kept (within rounding) and never upscaled.
                    #expect(w <= width && h2 <= height, "\(name) \(kind) upscaled")
                    if w >= 16 && h2 >= 16 {
                        let ratio = Double(w) / Double(h2), expected = Double(width) / Double(height)
                        #expect(abs(ratio - expected) / expected < 0.05, "\(name) \(kind): \(w)×\(h2) vs \(width)×\(height)")
                    }
                }
            case "corrupt":
                #expect(derivatives.isEmpty && item["derivativeError"] as? String != nil, "\(name) should carry a derivative error")
            default:
                #expect(derivatives.isEmpty, "\(name) is no image and has derivatives")
                #expect(item["isImage"] as? Bool != true, "\(name) is no image but recorded as one")
            }
        }
        // incoming/ is empty again: everything left it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: h.mount.path("incoming")).isEmpty)

        // The same rsync again: every file is a duplicate, nothing is uploaded.
        let again = h.server.mark()
        let second = run("/usr/bin/rsync", ["-a", h.source.path + "/", h.mount.path("incoming") + "/"], timeout: 600)
        #expect(second.status == 0)
        try h.waitUntilDone(total: 2 * files.count, timeout: 300)
        let writes = h.server.requests(since: again).filter { ["PUT", "MKCOL", "MOVE"].contains($0.method) }
        #expect(writes.isEmpty, "\(writes.count) write requests on the re-run: \(writes.prefix(5).map { "\($0.method) \($0.path)" })")
        let status = try h.status()
        #expect(status["duplicate"] as? Int == files.count && status["succeeded"] as? Int == files.count, "\(status)")
    }

    @Test("Same name, different content, same day: both kept, the second as 'name (2).ext'; xattrs show the state while in incoming/")
    func nameCollision() throws {
        let h = try IngestHarness(photos: 0)
        defer { h.stop() }
        let incoming = h.mount.path("incoming")
        try Data(contentsOf: h.source.appendingPathComponent("alpha.png")).write(to: URL(fileURLWithPath: incoming + "/same.png"))
        #expect(IngestHarness.xattr(incoming + "/same.png", "user.ncfs.status") != nil)
        try h.waitUntilDone(total: 1, timeout: 60)
        try Data(contentsOf: h.source.appendingPathComponent("one-pixel.png")).write(to: URL(fileURLWithPath: incoming + "/same.png"))
        try h.waitUntilDone(total: 2, timeout: 60)
        let folder = h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)/original")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(names == ["same (2).png", "same.png"], "\(names)")
        #expect(try IngestHarness.sha256(folder.appendingPathComponent("same.png")) == IngestHarness.sha256(h.source.appendingPathComponent("alpha.png")))
        #expect(try IngestHarness.sha256(folder.appendingPathComponent("same (2).png")) == IngestHarness.sha256(h.source.appendingPathComponent("one-pixel.png")))
        let derivatives = h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)/low")
        #expect(FileManager.default.fileExists(atPath: derivatives.appendingPathComponent("same (2)-w320.webp").path))

        // Two copies of one file dropped at the same moment: one is persisted, the other is
        // recorded as its duplicate (the workers take them in parallel).
        let twin = try Data(contentsOf: h.source.appendingPathComponent("grey.jpg"))
        try twin.write(to: URL(fileURLWithPath: incoming + "/twin-a.jpg"))
        try twin.write(to: URL(fileURLWithPath: incoming + "/twin-b.jpg"))
        try h.waitUntilDone(total: 4, timeout: 60)
        let twins = try h.items().filter { ($0["name"] as? String ?? "").hasPrefix("twin-") }.map { $0["state"] as? String ?? "" }.sorted()
        #expect(twins == ["duplicate", "succeeded"], "\(twins)")
    }

    @Test("--date-source exif files a photo under its capture day; public URLs through the share token fetch the same bytes; --share-links stores a link; rsync --inplace works")
    func exifDatesAndPublicURLs() throws {
        let token = "Sh4reT0ken"
        let h = try IngestHarness(photos: 0, arguments: ["--date-source", "exif", "--share-links"],
                                  serverArguments: ["--share", "\(token)=pindeck/media-uploads"],
                                  environment: ["NEXTCLOUD_PUBLIC_SHARE_TOKEN": token])
        defer { h.stop() }
        let names = ["rotated-6.jpg", "alpha.png", "café é.jpg"]
        let list = h.server.dataDir.appendingPathComponent("names.txt")
        try names.joined(separator: "\n").write(to: list, atomically: true, encoding: .utf8)
        let copy = run("/usr/bin/rsync", ["-a", "--inplace", "--files-from=\(list.path)", h.source.path + "/", h.mount.path("incoming") + "/"], timeout: 60)
        #expect(copy.status == 0, "\(copy.out)")
        try h.waitUntilDone(total: names.count, timeout: 120)
        let items = Dictionary(try h.items().map { ($0["name"] as! String, $0) }, uniquingKeysWith: { a, _ in a })
        for name in names {
            let item = try #require(items[name], "\(name) was not ingested")
            #expect(item["state"] as? String == "succeeded")
            let captured = h.manifest[name]?["captureDate"] as? String
            let day = captured.map { "\($0.prefix(4))/\($0.dropFirst(5).prefix(2))_\($0.dropFirst(8).prefix(2))" } ?? h.today
            let original = item["originalPath"] as? String
            #expect(original == "pindeck/media-uploads/\(day)/original/\(name)", "\(name) → \(original ?? "nil")")
            let encoded = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "é")))!
            let url = item["originalURL"] as? String
            #expect(url == "\(h.server.origin)/public.php/dav/files/\(token)/\(day)/original/\(encoded)", "\(url ?? "nil")")
            // The public URL serves exactly the original, without credentials.
            let fetched = h.server.dataDir.appendingPathComponent("fetched")
            let get = run("/usr/bin/curl", ["-sf", "-o", fetched.path, url ?? ""], timeout: 30)
            #expect(get.status == 0, "GET \(url ?? "")")
            #expect(try IngestHarness.sha256(fetched) == IngestHarness.sha256(h.source.appendingPathComponent(name)))
            for derivative in item["derivatives"] as? [[String: Any]] ?? [] {
                let u = derivative["url"] as? String ?? ""
                #expect(u.hasPrefix("\(h.server.origin)/public.php/dav/files/\(token)/\(day)/"), "\(u)")
                #expect(run("/usr/bin/curl", ["-sf", "-o", "/dev/null", u], timeout: 30).status == 0, "GET \(u)")
            }
            #expect(item["shareURL"] as? String != nil, "--share-links made no link for \(name)")
        }
    }

    @Test("kill -9 while uploading, while deriving, and at random moments of a 200-file ingest: after restarts every item succeeded exactly once, nothing orphaned or duplicated, no row stuck, catalog intact",
          arguments: [true, false])
    func crashes(bulk: Bool) throws {
        // With bulk upload (the default) an item's five files go in one request, made in the
        // uploading state; step by step (bulk=off) the original, then the derivatives.
        let h = try IngestHarness(photos: 0, generated: 200, arguments: bulk ? [] : ["-o", "bulk=off"])
        defer { h.stop() }
        // Slow uploads down so kills find work in every state.
        if bulk {
            try h.server.control("fault", ["method": "POST", "path_contains": "/dav/bulk", "action": "delay", "seconds": 0.3, "count": -1])
        } else {
            try h.server.control("fault", ["method": "PUT", "path_contains": "/original/", "action": "delay", "seconds": 0.3, "count": -1])
            try h.server.control("fault", ["method": "PUT", "path_contains": "/high/", "action": "delay", "seconds": 0.2, "count": -1])
        }
        let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", h.mount.path("incoming") + "/"], timeout: 300)
        #expect(copy.status == 0)

        var kills: [String] = []
        let points: [(String, String?)] = bulk
            ? [("while uploading", "uploading"), ("at a random moment", nil), ("at another random moment", nil)]
            : [("while uploading", "uploading"), ("while deriving", "deriving"), ("at a random moment", nil)]
        for (point, state) in points {
            let deadline = Date().addingTimeInterval(60)
            var hit = false
            while Date() < deadline {
                let status = try h.status()
                if let state {
                    if (status[state] as? Int ?? 0) > 0 { hit = true; break }
                } else if (status["pending"] as? Int ?? 0) + (status["uploading"] as? Int ?? 0) + (status["deriving"] as? Int ?? 0) > 0 {
                    usleep(UInt32.random(in: 0...400_000))
                    hit = true
                    break
                }
                usleep(20_000)
            }
            #expect(hit, "nothing was \(state ?? "in progress") when the kill \(point) came: the test proves nothing")
            h.mount.kill()
            kills.append(point)
            try h.remount()
        }
        try h.server.control("clear", [:])
        try h.waitUntilDone(total: 200, timeout: 300)

        let items = try h.items()
        #expect(items.count == 200)
        #expect(items.allSatisfy { $0["state"] as? String == "succeeded" }, "\(items.filter { $0["state"] as? String != "succeeded" }.map { "\($0["name"]!) \($0["state"]!)" })")
        let day = h.server.filesDir.appendingPathComponent("pindeck/media-uploads/\(h.today)")
        let originals = try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent("original").path).sorted()
        let sources = try FileManager.default.contentsOfDirectory(atPath: h.generated.path).sorted()
        #expect(originals == sources, "orphans or duplicates: \(Set(originals).symmetricDifference(sources).sorted().prefix(5))")
        for name in sources {
            #expect(try IngestHarness.sha256(day.appendingPathComponent("original/\(name)")) == IngestHarness.sha256(h.generated.appendingPathComponent(name)))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent("low").path).count == 200)
        #expect(try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent("high").path).count == 400)
        #expect(try FileManager.default.contentsOfDirectory(atPath: day.appendingPathComponent("preview").path).count == 200)
        #expect(run("/usr/bin/sqlite3", [h.state.appendingPathComponent("catalog.sqlite").path, "PRAGMA integrity_check"]).out.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
        #expect(try FileManager.default.contentsOfDirectory(atPath: h.mount.path("incoming")).isEmpty)
        #expect(kills.count == 3)
    }

    @Test("Server answering 503 to 20 % of requests, then down for 30 s in the middle of an ingest: every item ends succeeded")
    func flakyServer() throws {
        let h = try IngestHarness(photos: 0, generated: 40)
        defer { h.stop() }
        try h.server.control("fault", ["method": "*", "path_contains": "", "status": 503, "count": -1, "probability": 0.2, "seed": 7])
        let copy = run("/usr/bin/rsync", ["-a", h.generated.path + "/", h.mount.path("incoming") + "/"], timeout: 120)
        #expect(copy.status == 0, "the copy into incoming/ must not depend on the server: \(copy.out)")
        // Down (maintenance: every request 503) for 30 s once the first items are through.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, (try h.status()["succeeded"] as? Int ?? 0) < 3 { usleep(50_000) }
        try h.server.control("maintenance", ["on": true])
        sleep(30)
        let during = try h.status()
        try h.server.control("maintenance", ["on": false])
        try h.waitUntilDone(total: 40, timeout: 400)
        try h.server.control("clear", [:])
        let items = try h.items()
        #expect(items.count == 40 && items.allSatisfy { $0["state"] as? String == "succeeded" },
                "\(items.filter { $0["state"] as? String != "succeeded" }.map { "\($0["name"]!): \($0["persistError"] ?? "")" }); during the outage: \(during)")
        #expect(during["failed"] as? Int == 0, "items failed during a 30 s outage: \(during)")
    }

    @Test("A failed item stays in incoming/ with its error in xattrs, is EBUSY while uploading; backfill reschedules it; quarantine finds a deleted derivative (dry run changes nothing)")
    func repair() throws {
        let h = try IngestHarness(photos: 0, arguments: ["--ingest-attempts", "2"])
        defer { h.stop() }
        let incoming = h.mount.path("incoming")

        // 403 on the original's PUT is a failure retrying cannot fix: failed at once.
        // Refused in its bulk request, then 403 on its PUT.
        try h.server.control("fault", ["method": "BULK-PART", "path_contains": "broken.png", "message": "injected", "count": -1])
        try h.server.control("fault", ["method": "PUT", "path_contains": "broken.png", "status": 403, "count": -1])
        try Data(contentsOf: h.source.appendingPathComponent("alpha.png")).write(to: URL(fileURLWithPath: incoming + "/broken.png"))
        try h.waitUntil(timeout: 60) { ($0["failed"] as? Int ?? 0) == 1 }
        #expect(IngestHarness.xattr(incoming + "/broken.png", "user.ncfs.status") == "failed")
        #expect(IngestHarness.xattr(incoming + "/broken.png", "user.ncfs.error")?.contains("403") == true)
        #expect(IngestHarness.xattr(incoming + "/broken.png", "user.ncfs.remote_path")?.hasSuffix("/original/broken.png") == true)
        try h.server.control("clear", [:])

        // While its original is being uploaded (stalled), the file cannot change.
        // (Its five files go in one bulk request, which the server holds.)
        try h.server.control("fault", ["method": "POST", "path_contains": "/dav/bulk", "action": "stall", "seconds": 8, "count": 1])
        try Data(contentsOf: h.source.appendingPathComponent("one-pixel.png")).write(to: URL(fileURLWithPath: incoming + "/busy.png"))
        try h.waitUntil(timeout: 30) { ($0["uploading"] as? Int ?? 0) == 1 }
        #expect(open(incoming + "/busy.png", O_WRONLY) == -1 && errno == EBUSY)
        #expect(unlink(incoming + "/busy.png") == -1 && errno == EBUSY)

        let backfill = run(MountedServer.binary, ["backfill", "--state-dir", h.state.path], errors: true)
        #expect(backfill.status == 0 && backfill.out.contains("1 failed item(s) rescheduled"), "\(backfill.out)")
        try h.waitUntilDone(total: 2, timeout: 90)
        #expect(try h.items().allSatisfy { $0["state"] as? String == "succeeded" })
        #expect(!FileManager.default.fileExists(atPath: incoming + "/broken.png"))

        // A derivative deleted on the server: quarantine --dry-run reports, quarantine marks.
        // The item's own day, not today's: the test may run across midnight (it did, in CI).
        let day = try #require(try h.items().first { $0["name"] as? String == "broken.png" }?["day"] as? String)
        let low = "pindeck/media-uploads/\(day)/low/broken-w320.webp"
        _ = try h.server.client().delete(low)
        let connection = ["--url", h.server.baseURL, "--user", h.server.user, "--state-dir", h.state.path]
        let dry = run(MountedServer.binary, ["quarantine", "--dry-run"] + connection, environment: h.passwordEnvironment, errors: true)
        #expect(dry.status == 0 && dry.out.contains("missing /\(low)") && dry.out.contains("1 broken"), "\(dry.out)")
        #expect((try h.status()["quarantined"] as? Int) == 0)
        let real = run(MountedServer.binary, ["quarantine"] + connection, environment: h.passwordEnvironment, errors: true)
        #expect(real.status == 0 && real.out.contains("marked quarantined"), "\(real.out)")
        #expect((try h.status()["quarantined"] as? Int) == 1)
        let listed = run(MountedServer.binary, ["items", "--status", "quarantined", "--state-dir", h.state.path])
        #expect(listed.out.contains("broken.png") && listed.out.contains("missing"), "\(listed.out)")
    }
}

/// A test server, a mount with incoming/, and the images to ingest.
final class IngestHarness: @unchecked Sendable {
    // @unchecked: used from the test's thread only.
    let server: TestServer
    private(set) var mount: MountedServer
    let state: URL
    let source: URL
    let generated: URL
    let manifest: [String: [String: Any]]
    private let arguments: [String]
    private let environment: [String: String]

    static var python: String { TestServer.repositoryRoot.appendingPathComponent(".venv/bin/python3").path }
    static var deriveTool: String { TestServer.buildDirectory.appendingPathComponent("ncfs-derive").path }

    /// Why the suite cannot run here (nil: it can).
    static var missing: String? {
        if !FileManager.default.isExecutableFile(atPath: python) { return "no .venv/bin/python3 (run scripts/setup)" }
        if !FileManager.default.isExecutableFile(atPath: deriveTool) { return "no .build/debug/ncfs-derive (swift build first)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/vipsheader") { return "no vipsheader (apt install libvips-tools)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/rsync") { return "no rsync" }
        return nil
    }

    init(photos: Int, generated count: Int = 0, arguments: [String] = [], serverArguments: [String] = [],
         environment: [String: String] = [:]) throws {
        server = try TestServer(arguments: serverArguments)
        state = server.dataDir.appendingPathComponent("state")
        source = server.dataDir.appendingPathComponent("images")
        generated = server.dataDir.appendingPathComponent("generated")
        self.arguments = arguments
        self.environment = environment
        let make = run(Self.python, [TestServer.repositoryRoot.appendingPathComponent("scripts/test-images/make.py").path, source.path]
                       + (photos > 0 ? ["--photos", String(photos)] : []), timeout: 300)
        guard make.status == 0 else { server.stop(); throw MountError("make.py failed: \(make.out)") }
        let data = try Data(contentsOf: source.appendingPathComponent("manifest.json"))
        manifest = try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] ?? [:]
        try FileManager.default.removeItem(at: source.appendingPathComponent("manifest.json"))
        if count > 0 {
            // Small distinct JPEGs: fast to derive, so a long ingest fits a test.
            let script = """
                import sys, random
                from PIL import Image
                out, n = sys.argv[1], int(sys.argv[2])
                for i in range(n):
                    rng = random.Random(i)
                    image = Image.effect_noise((160, 120), 30 + i % 40).convert("RGB")
                    image.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (0, 0, 40 + i % 80, 30))
                    image.save(f"{out}/gen-{i:04d}.jpg", quality=85)
                """
            try FileManager.default.createDirectory(at: generated, withIntermediateDirectories: true)
            let made = run(Self.python, ["-c", script, generated.path, String(count)], timeout: 120)
            guard made.status == 0 else { server.stop(); throw MountError("generating images failed: \(made.out)") }
        }
        mount = try Self.mount(server, state: state, arguments: arguments, environment: environment)
    }

    private static func mount(_ server: TestServer, state: URL, arguments: [String], environment: [String: String]) throws -> MountedServer {
        try MountedServer(server, options: ["state_dir=\(state.path)", "ingest_delay=0.3"],
                          arguments: ["--time-zone", "UTC"] + arguments, environment: environment)
    }

    func remount() throws {
        mount = try Self.mount(server, state: state, arguments: arguments, environment: environment)
    }

    func stop() {
        mount.unmount()
        server.stop()
    }

    var passwordEnvironment: [String: String] { ["NEXTCLOUD_WEBDAV_APP_PASSWORD": server.password] }

    var today: String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: Date())
        return String(format: "%04d/%02d_%02d", c.year!, c.month!, c.day!)
    }

    func sourceFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: source.path)
    }

    /// `ncfs status --json`'s ingest object.
    func status() throws -> [String: Any] {
        let result = run(MountedServer.binary, ["status", "--json", "--state-dir", state.path])
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any],
              let ingest = object["ingest"] as? [String: Any] else {
            throw MountError("ncfs status failed: \(result.out)")
        }
        return ingest
    }

    func items() throws -> [[String: Any]] {
        let result = run(MountedServer.binary, ["items", "--json", "--limit", "0", "--state-dir", state.path])
        guard result.status == 0, let items = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [[String: Any]] else {
            throw MountError("ncfs items failed: \(result.out)")
        }
        return items
    }

    func waitUntil(timeout: Double, _ condition: ([String: Any]) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try status()
            if condition(last) { return }
            usleep(200_000)
        }
        throw MountError("timed out; ingest status \(last); daemon log:\n\(mount.logTail)")
    }

    /// Waits until `total` items reached a final state and nothing is in progress or waiting.
    func waitUntilDone(total: Int, timeout: Double) throws {
        try waitUntil(timeout: timeout) { s in
            func n(_ key: String) -> Int { s[key] as? Int ?? 0 }
            return n("pending") + n("uploading") + n("deriving") + n("staged") == 0
                && n("succeeded") + n("duplicate") + n("failed") + n("quarantined") >= total
        }
    }

    static func randomFile(_ url: URL, bytes: Int) throws {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? handle.close() }
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let out = try FileHandle(forWritingTo: url)
        defer { try? out.close() }
        var left = bytes
        while left > 0 {
            let chunk = handle.readData(ofLength: min(left, 4 << 20))
            out.write(chunk)
            left -= chunk.count
        }
    }

    static func sha256(_ url: URL) throws -> String {
        let result = run("/usr/bin/sha256sum", [url.path], timeout: 60)
        guard result.status == 0 else { throw MountError("sha256sum \(url.path): \(result.out)") }
        return String(result.out.prefix(64))
    }

    /// Width and height as libvips decodes them.
    static func dimensions(_ url: URL) throws -> (Int, Int) {
        let w = run("/usr/bin/vipsheader", ["-f", "width", url.path]), h = run("/usr/bin/vipsheader", ["-f", "height", url.path])
        guard let width = Int(w.out.trimmingCharacters(in: .whitespacesAndNewlines)),
              let height = Int(h.out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw MountError("vipsheader \(url.path): \(w.out) \(h.out)")
        }
        return (width, height)
    }

    static func numbered(_ name: String, _ n: Int) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "\(name) (\(n))" }
        return "\(name[..<dot]) (\(n))\(name[dot...])"
    }

    static func stem(_ name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }

    /// The preview keeps browser-safe formats and turns the others into JPEG.
    static func previewExtension(_ name: String) -> String {
        let ext = (name as NSString).pathExtension.lowercased()
        switch ext {
        case "jpg", "jpeg": return "jpg"
        case "png", "webp": return ext
        case "gif": return FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libcgif.so.0") ? "gif" : "png"
        default: return "jpg"
        }
    }

    static func xattr(_ path: String, _ name: String) -> String? {
        let result = run("/usr/bin/getfattr", ["-n", name, "--only-values", "--absolute-names", path])
        return result.status == 0 ? result.out : nil
    }
}
