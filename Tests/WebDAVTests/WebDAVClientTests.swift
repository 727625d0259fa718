import Foundation
import Testing
import HTTPTransport
import TestSupport
@testable import WebDAV

/// Every client verb against the real test server process.
@Suite struct WebDAVClientTests {
    let server: TestServer
    let client: WebDAVClient

    init() throws {
        server = try TestServer()
        client = try server.client()
    }

    func write(_ path: String, _ text: String, mtime: Date? = nil) throws {
        try client.put(path, body: .text(text), mtime: mtime)
    }

    @Test func listsAFolderWithSizesIdsAndETags() throws {
        try client.mkcol("Photos")
        try client.mkcol("Photos/2024")
        try write("Photos/a.txt", "hello")
        try write("Photos/2024/b.txt", "0123456789")
        let (folder, children) = try client.list("Photos")
        #expect(folder.isCollection)
        #expect(folder.size == 15, "oc:size of a folder is the recursive total")
        #expect(children.map(\.name).sorted() == ["2024", "a.txt"])
        let sub = try #require(children.first { $0.name == "2024" })
        #expect(sub.isCollection && sub.size == 10 && sub.path == "Photos/2024")
        let file = try #require(children.first { $0.name == "a.txt" })
        #expect(file.contentLength == 5 && file.fileID != nil && file.etag != nil && file.permissions?.contains("W") == true)
    }

    @Test func etagsChangeUpTheAncestorChain() throws {
        try client.mkcol("a")
        try client.mkcol("a/b")
        try write("a/b/c.txt", "1")
        let rootBefore = try client.stat("").etag
        let aBefore = try client.stat("a").etag
        let otherBefore = try client.stat("a/b/c.txt").etag
        try write("a/b/c.txt", "2")
        #expect(try client.stat("").etag != rootBefore)
        #expect(try client.stat("a").etag != aBefore)
        #expect(try client.stat("a/b/c.txt").etag != otherBefore)
    }

    @Test func modificationTimeRoundTrips() throws {
        let mtime = Date(timeIntervalSince1970: 1_600_000_000)
        let result = try client.put("m.txt", body: .text("x"), mtime: mtime)
        #expect(result.mtimeAccepted && result.created && result.fileID != nil)
        #expect(try client.stat("m.txt").lastModified == mtime)
        let later = Date(timeIntervalSince1970: 1_700_000_000)
        try client.setModificationTime("m.txt", later)
        #expect(try client.stat("m.txt").lastModified == later)
    }

    @Test func conditionalWritesMapTo412() throws {
        let first = try client.put("c.txt", body: .text("one"))
        let etag = try #require(first.etag)
        try client.put("c.txt", body: .text("two"), conditions: .init(ifMatch: etag))
        let stale = #expect(throws: DAVError.self) {
            try client.put("c.txt", body: .text("three"), conditions: .init(ifMatch: etag))
        }
        #expect(stale?.kind == .preconditionFailed)
        let exists = #expect(throws: DAVError.self) {
            try client.put("c.txt", body: .text("four"), conditions: .init(createOnly: true))
        }
        #expect(exists?.kind == .preconditionFailed)
        #expect(try client.get("c.txt").bytes == Array("two".utf8))
    }

    @Test func mkcolAndMoveErrorsAreTyped() throws {
        try client.mkcol("d")
        #expect((#expect(throws: DAVError.self) { try client.mkcol("d") })?.kind == .alreadyExists)
        #expect((#expect(throws: DAVError.self) { try client.mkcol("missing/child") })?.kind == .conflict)
        try write("x.txt", "x")
        try write("y.txt", "y")
        #expect((#expect(throws: DAVError.self) { try client.move("x.txt", to: "y.txt", overwrite: false) })?.kind == .preconditionFailed)
        #expect((#expect(throws: DAVError.self) { try client.move("x.txt", to: "nope/x.txt") })?.kind == .conflict)
        #expect((#expect(throws: DAVError.self) { try client.stat("nothing-here") })?.kind == .notFound)
    }

    @Test func moveKeepsFileIdAndCopyGetsANewOne() throws {
        try write("orig.txt", "content")
        let id = try #require(try client.stat("orig.txt").fileID)
        try client.move("orig.txt", to: "moved.txt")
        #expect(try client.stat("moved.txt").fileID == id)
        try client.copy("moved.txt", to: "copied.txt")
        let copyID = try client.stat("copied.txt").fileID
        #expect(copyID != nil && copyID != id)
        #expect(try client.get("copied.txt").bytes == Array("content".utf8))
    }

    @Test func rangedGetReturnsExactlyTheRange() throws {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try client.put("r.bin", body: .bytes(bytes))
        let part = try client.get("r.bin", range: 1234..<5678)
        #expect(part.status == 206)
        #expect(part.bytes == Array(bytes[1234..<5678]))
    }

    @Test func trashDeleteListRestoreEmpty() throws {
        try write("keep.txt", "precious")
        let id = try client.stat("keep.txt").fileID
        try client.delete("keep.txt")
        #expect((#expect(throws: DAVError.self) { try client.stat("keep.txt") })?.kind == .notFound)
        let items = try client.trashList()
        let item = try #require(items.first { $0.trash?.originalName == "keep.txt" })
        #expect(item.trash?.originalLocation == "keep.txt")
        try client.trashRestore(item.path)
        #expect(try client.get("keep.txt").bytes == Array("precious".utf8))
        #expect(try client.stat("keep.txt").fileID == id, "a restored file keeps its id")

        try write("gone.txt", "bye")
        try client.delete("gone.txt")
        #expect(try client.trashList().count == 1)
        try client.trashDelete(nil)
        #expect(try client.trashList().isEmpty)
    }

    @Test func forbiddenNamesAreRefusedBeforeAnyRequest() throws {
        try client.loadCapabilities()
        let mark = server.mark()
        for name in [".htaccess", "a\\b", "x.part", "y.filepart", String(repeating: "n", count: 250), "bad\u{1}name"] {
            let error = #expect(throws: DAVError.self) { try client.put(name, body: .text("x")) }
            #expect(error?.kind == .invalidName, "\(name.prefix(20)) must be refused locally")
        }
        #expect((#expect(throws: DAVError.self) { try client.mkcol(".HTACCESS") })?.kind == .invalidName)
        #expect(server.requests(since: mark).isEmpty, "no request may leave for a forbidden name")
    }

    @Test func namesAreSentAsNFC() throws {
        let nfd = "Cafe\u{301}.txt"
        try client.put(nfd, body: .text("x"))
        let listed = try client.list("").children.map(\.name)
        #expect(listed.contains("Caf\u{E9}.txt"))
        #expect(try client.get("Caf\u{E9}.txt").bytes == [UInt8(ascii: "x")])
    }

    @Test func chunkedUploadOfMoreThanThreeChunksIsIntact() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-chunk-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<(9 << 20) + 12345).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let source = dir.appendingPathComponent("big.bin")
        try Data(bytes).write(to: source)
        var options = WebDAVClient.ChunkedUploadOptions()
        options.chunkSize = 2 << 20  // 5 chunks
        let mtime = Date(timeIntervalSince1970: 1_650_000_000)
        let mark = server.mark()
        let result = try client.uploadChunked(source.path, to: "big.bin", mtime: mtime, options: options)
        #expect(result.created && result.mtimeAccepted)
        let chunkPuts = server.requests(since: mark).filter { $0.method == "PUT" && $0.path.contains("/uploads/") }
        #expect(chunkPuts.count == 5)
        let downloaded = dir.appendingPathComponent("back.bin")
        try client.download("big.bin", to: downloaded.path)
        #expect(sha256(file: downloaded) == sha256(file: source))
        #expect(try client.stat("big.bin").lastModified == mtime)
    }

    @Test func chunkedUploadResumesWithoutResendingChunks() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-resume-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bytes = (0..<(4 << 20) + 100).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let source = dir.appendingPathComponent("r.bin")
        try Data(bytes).write(to: source)
        var options = WebDAVClient.ChunkedUploadOptions()
        options.chunkSize = 1 << 20
        options.parallelism = 1
        // The third chunk fails for good (400 is not retried): the upload stops part way.
        try server.fault(method: "PUT", pathContains: "/00003", status: 400, count: 1)
        #expect(throws: DAVError.self) { try client.uploadChunked(source.path, to: "r.bin", options: options) }
        let mark = server.mark()
        try client.uploadChunked(source.path, to: "r.bin", options: options)
        let resent = server.requests(since: mark).filter { $0.method == "PUT" }.map(\.path)
        #expect(!resent.contains { $0.hasSuffix("/00001") || $0.hasSuffix("/00002") }, "chunks on the server are not sent again")
        #expect(try client.get("r.bin").bytes == bytes)
    }

    /// Conditions on a chunked upload: Nextcloud 32 checks `If-None-Match`/`If-Match` on the
    /// final MOVE against the upload's `.file` (412 every time, recorded in
    /// nextcloud32-chunked-move-if-none-match-412.xml), so create-only is `Overwrite: F` and
    /// If-Match is a look at the target before the MOVE.
    @Test func chunkedUploadConditions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-cond-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("c.bin")
        try Data((0..<(2 << 20) + 7).map { UInt8(truncatingIfNeeded: $0) }).write(to: source)
        var options = WebDAVClient.ChunkedUploadOptions()
        options.chunkSize = 1 << 20
        let created = try client.uploadChunked(source.path, to: "c.bin", conditions: .init(createOnly: true), options: options)
        #expect(created.created)
        options.uploadID = "ncfs-" + UUID().uuidString.lowercased()
        let exists = #expect(throws: DAVError.self) {
            try client.uploadChunked(source.path, to: "c.bin", conditions: .init(createOnly: true), options: options)
        }
        #expect(exists?.kind == .preconditionFailed)
        let etag = try #require(try client.stat("c.bin").etag)
        options.uploadID = "ncfs-" + UUID().uuidString.lowercased()
        try client.uploadChunked(source.path, to: "c.bin", conditions: .init(ifMatch: etag), options: options)
        options.uploadID = "ncfs-" + UUID().uuidString.lowercased()
        let stale = #expect(throws: DAVError.self) {
            try client.uploadChunked(source.path, to: "c.bin", conditions: .init(ifMatch: etag), options: options)
        }
        #expect(stale?.kind == .preconditionFailed)
    }

    /// Nextcloud 32 answers the losers of MKCOLs of one name at once with 403 "Could not create
    /// directory" or 423 "is locked" (fixtures nextcloud32-mkcol-race-403/423.xml, recorded on a
    /// real server), not only 405. The folder is there: that is `alreadyExists`, as a 405 says.
    /// Where the folder is not there, the 403 stays a refusal.
    @Test(arguments: [403, 423]) func mkcolLostRaceIsAlreadyExists(status: Int) throws {
        try client.mkcol("raced")
        try server.fault(method: "MKCOL", pathContains: "raced", status: status, count: 1)
        let lost = #expect(throws: DAVError.self) { try client.mkcol("raced") }
        #expect(lost?.kind == .alreadyExists, "\(String(describing: lost))")
        try server.fault(method: "MKCOL", pathContains: "absent", status: 403, count: 1)
        let refused = #expect(throws: DAVError.self) { try client.mkcol("absent") }
        #expect(refused?.kind == .forbidden)
    }

    @Test func searchFindsByName() throws {
        try client.mkcol("s")
        try write("s/holiday-1.jpg", "a")
        try write("s/holiday-2.jpg", "b")
        try write("s/work.txt", "c")
        let found = try client.search(name: "%holiday%").map(\.path).sorted()
        #expect(found == ["s/holiday-1.jpg", "s/holiday-2.jpg"])
    }

    @Test func statusUserAndCapabilities() throws {
        let status = try client.serverStatus()
        #expect(status.installed && !status.maintenance)
        #expect(try client.currentUser().id == server.user)
        let caps = try client.loadCapabilities()
        #expect(caps.chunking)
        #expect(caps.nameRules.forbiddenNames.contains(".htaccess"))
    }

    /// Uploaders ask before every batch whether bulk uploads are offered: while the
    /// capabilities cannot be read, that is one failed ask a minute, not a request per batch;
    /// once the server answers (a minute later), the answer is kept.
    @Test func unreadableCapabilitiesAreNotAskedAgainAtEveryBatch() throws {
        try server.fault(method: "GET", pathContains: "capabilities", status: 503, count: -1)
        let before = server.mark()
        for _ in 0..<5 {
            #expect(!client.bulkUploadsAvailable(), "no bulk uploads while the capabilities are unreadable")
            #expect(client.chunkedUploadsAvailable(), "chunks are still tried (a missing endpoint is caught then)")
        }
        let asked = server.requests(since: before).filter { $0.path.contains("capabilities") }
        // One ask, with the HTTP layer's own retries of the 503 (at most 4 attempts, see
        // `TestServer.client`); not one per call.
        #expect(!asked.isEmpty && asked.count <= 4, "\(asked.map { "\($0.method) \($0.status)" })")
        try server.control("clear", [:])
        client.capabilitiesRetryAt.withLock { $0 = Date().addingTimeInterval(-1) }  // a minute later
        #expect(client.bulkUploadsAvailable())
        let answered = server.mark()
        #expect(client.bulkUploadsAvailable() && client.chunkedUploadsAvailable())
        #expect(server.requests(since: answered).isEmpty, "the answer is kept")
    }

    @Test func publicShareServesFilesWithoutCredentials() throws {
        try client.mkcol("shared")
        try write("shared/pic.txt", "public bytes")
        let share = try client.createPublicShare("shared")
        let anonymous = HTTPClient(configuration: HTTPClientConfiguration())
        let response = try anonymous.perform(HTTPRequest(method: "GET", url: "\(server.origin)/public.php/dav/files/\(share.token)/pic.txt"))
        #expect(response.status == 200 && response.bodyText == "public bytes")
        // Listed by path: this link, once per creation; the file below has none of its own.
        #expect(try client.publicShares(of: "shared").map(\.token) == [share.token])
        let second = try client.createPublicShare("shared")
        #expect(try client.publicShares(of: "shared").map(\.token) == [share.token, second.token])
        #expect(try client.publicShares(of: "shared/pic.txt").isEmpty)
        #expect((#expect(throws: DAVError.self) { try client.publicShares(of: "missing") })?.kind == .notFound)
    }

    @Test func unauthorizedIsTypedAndNotRetried() throws {
        var config = HTTPClientConfiguration(credentials: Credentials(user: server.user, password: "not-the-app-password"))
        config.retry = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(1))
        let bad = try WebDAVClient(baseURL: server.baseURL, http: HTTPClient(configuration: config))
        let mark = server.mark()
        #expect((#expect(throws: DAVError.self) { try bad.stat("") })?.kind == .unauthorized)
        #expect(server.requests(since: mark).count == 1)
    }

    @Test func maintenanceModeSurfacesAsUnavailable() throws {
        try server.control("maintenance", ["on": true])
        defer { try? server.control("maintenance", ["on": false]) }
        let quick = try server.client(retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1)))
        let error = #expect(throws: DAVError.self) { try quick.stat("") }
        #expect(error?.kind == .unavailable)
        #expect(error?.server?.message?.contains("maintenance") == true)
    }

    @Test func retriesAnInjected503OnPropfind() throws {
        try server.fault(method: "PROPFIND", status: 503, count: 2)
        #expect(try client.stat("").isCollection)
    }

    @Test func genericServerHasNoNextcloudExtras() throws {
        let generic = try TestServer(arguments: ["--generic"])
        let c = try generic.client()
        try c.mkcol("f")
        try c.put("f/a.txt", body: .text("abc"))
        let (folder, children) = try c.list("f")
        #expect(folder.size == nil, "no oc:size means unknown, not zero")
        #expect(children.first?.contentLength == 3 && children.first?.fileID == nil)
        #expect((#expect(throws: DAVError.self) { try c.trashList() }) != nil)
    }
}

func sha256(file: URL) -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [file.path]
    let pipe = Pipe()
    p.standardOutput = pipe
    try? p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: out, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
