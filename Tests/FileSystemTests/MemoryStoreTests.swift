import Foundation
import HTTPTransport
import TestSupport
import Testing
import WebDAV

/// The in-memory store against the emulator: one script of operations (conditions, MOVE
/// with and without overwrite, dead properties below a moved folder, bulk outcomes, ranged
/// and conditional GETs, errors) run through `RemoteStore` on both must tell the same story;
/// then the store's own parts (faults, lost answers, counts, views, ETag propagation).
@Suite("MemoryStore: Nextcloud's semantics in memory")
struct MemoryStoreTests {
    /// One step of a script as a line: what came back, or the error's kind.
    static func line(_ name: String, _ body: () throws -> String) -> String {
        do { return "\(name): \(try body())" } catch let error as DAVError {
            return "\(name): \(error.kind)"
        } catch {
            return "\(name): \(error)"
        }
    }

    /// Runs the script on `store`, one line per step: what came back, in words that do not
    /// depend on the server's ETag or file id values (only on whether they changed).
    static func script(_ store: any RemoteStore) -> [String] {
        var lines: [String] = []
        func step(_ name: String, _ body: () throws -> String) { lines.append(Self.line(name, body)) }
        let mtime = Date(timeIntervalSince1970: 1_700_000_000)
        let ten = Array("0123456789".utf8)
        var firstTag = "", fileID: Int64 = 0
        step("mkcol d") { try store.mkcol("d"); return "ok" }
        step("mkcol d again") { try store.mkcol("d"); return "ok" }
        step("mkcol below a missing folder") { try store.mkcol("x/y"); return "ok" }
        step("create d/f") {
            let r = try store.put("d/f", body: .bytes(ten), mtime: mtime, conditions: .init(createOnly: true))
            firstTag = r.etag ?? ""
            fileID = r.fileID ?? 0
            return "created \(r.created), mtime accepted \(r.mtimeAccepted), etag \(r.etag != nil)"
        }
        step("create d/f again") { try store.put("d/f", body: .bytes(ten), conditions: .init(createOnly: true)).created.description }
        step("replace d/f over another version") { try store.put("d/f", body: .bytes(ten), conditions: .init(ifMatch: "0000")).created.description }
        step("replace d/f over its version") {
            let r = try store.put("d/f", body: .bytes(ten + ten), mtime: mtime, conditions: .init(ifMatch: firstTag))
            return "created \(r.created), new etag \(r.etag != firstTag), same id \(r.fileID == fileID)"
        }
        step("replace a missing file over a version") { try store.put("g", body: .bytes(ten), conditions: .init(ifMatch: firstTag)).created.description }
        step("put into a missing folder") { try store.put("nope/f", body: .bytes(ten)).created.description }
        step("put onto a folder") { try store.put("d", body: .bytes(ten)).created.description }
        step("stat d/f") {
            let r = try store.stat("d/f")
            return "length \(r.contentLength ?? -1), size \(r.size ?? -1), mtime \(Int(r.lastModified?.timeIntervalSince1970 ?? 0)), folder \(r.isCollection)"
        }
        step("posix on d, d/f, d/s/h") {
            try store.mkcol("d/s")
            try store.put("d/s/h", body: .bytes(ten), mtime: mtime)
            try store.setPosixProperty("d", "0755 1000 1000")
            try store.setPosixProperty("d/f", "0600 1000 1000")
            try store.setPosixProperty("d/s/h", "0644 1000 1000")
            return try ["d", "d/f", "d/s/h"].map { try store.stat($0).posix ?? "-" }.joined(separator: ", ")
        }
        step("folder sizes") { "d \(try store.stat("d").size ?? -1), root \(try store.stat("").size ?? -1)" }
        step("move d to e") {
            let r = try store.move("d", to: "e", overwrite: false)
            return "created \(r.created)"
        }
        step("dead properties after the move") { try ["e", "e/f", "e/s/h"].map { try store.stat($0).posix ?? "-" }.joined(separator: ", ") }
        step("file id after the move") { (try store.stat("e/f").fileID == fileID).description }
        step("move a file onto a file without overwrite") { try store.move("e/f", to: "e/s/h", overwrite: false).created.description }
        step("move a file onto a file") {
            try store.setPosixProperty("e/f", "0640 1000 1000")
            let r = try store.move("e/f", to: "e/s/h", overwrite: true)
            let moved = try store.stat("e/s/h")
            return "created \(r.created), id kept \(moved.fileID == fileID), posix \(moved.posix ?? "-"), names \(try store.list("e/s").children.map(\.name))"
        }
        step("move a folder into itself") { try store.move("e", to: "e/s/z", overwrite: true).created.description }
        step("move a missing entry") { try store.move("missing", to: "q", overwrite: true).created.description }
        step("move into a missing folder") { try store.move("e/s/h", to: "nope/h", overwrite: true).created.description }
        step("get whole") { String(decoding: try store.get("e/s/h").bytes, as: UTF8.self) }
        step("get a range") { let r = try store.get("e/s/h", range: 5..<12); return "\(r.status) \(String(decoding: r.bytes, as: UTF8.self))" }
        step("get a range past the end") { try store.get("e/s/h", range: 20..<30).status.description }
        step("get over another version") {
            try store.get("e/s/h", range: nil, ifMatch: "0000", sink: .memory(limit: 100)).status.description
        }
        step("list a file") { try store.list("e/s/h").children.count.description }
        step("bulk") {
            try store.bulkUpload([BulkFile(path: "b1", content: ten, mtime: 1_700_000_000),
                                  BulkFile(path: "nope/b2", content: ten, mtime: 1_700_000_000),
                                  BulkFile(path: "e", content: ten, mtime: 1_700_000_000),
                                  BulkFile(path: "e/b3", content: ten, mtime: 1_700_000_000)]).map { outcome in
                switch outcome {
                case .stored: "stored"
                case .refused: "refused"
                case .notProcessed: "not processed"
                }
            }.joined(separator: ", ")
        }
        step("bulk stored with its mtime") { "\(Int(try store.stat("e/b3").lastModified?.timeIntervalSince1970 ?? 0))" }
        step("setting an mtime") {
            let before = try store.stat("")
            let fileBefore = try store.stat("b1")
            try store.setModificationTime("b1", Date(timeIntervalSince1970: 1_600_000_000))
            let after = try store.stat("")
            let file = try store.stat("b1")
            return "file etag changed \(file.etag != fileBefore.etag), mtime \(Int(file.lastModified!.timeIntervalSince1970)), "
                + "root etag changed \(after.etag != before.etag), root mtime raised \(after.lastModified! > before.lastModified!)"
        }
        step("the posix property keeps the ETag") {
            let before = try store.stat("b1")
            try store.setPosixProperty("b1", "0700 0 0")
            return (try store.stat("b1").etag == before.etag).description
        }
        step("delete") { try store.delete("e/s"); return (try? store.stat("e/s/h")) == nil ? "gone" : "still there" }
        step("delete a missing entry") { try store.delete("e/s"); return "ok" }
        step("mkcol with a forbidden name") { try store.mkcol("bad.part"); return "ok" }
        return lines
    }

    /// Runs `script` against the emulator and against a new in-memory store, expects the same
    /// lines from both, and returns the in-memory ones.
    static func sameStory(_ script: (any IngestStore) -> [String]) throws -> [String] {
        let server = try TestServer()
        defer { server.stop() }
        let onEmulator = script(try server.client())
        let inMemory = script(MemoryStore())
        for (emulator, memory) in zip(onEmulator, inMemory) {
            #expect(emulator == memory)
        }
        #expect(onEmulator.count == inMemory.count)
        return inMemory
    }

    @Test("the script tells the same story on the emulator and in memory")
    func sameAsEmulator() throws {
        let inMemory = try Self.sameStory { Self.script($0) }
        // What the story is (so the two cannot agree on something wrong).
        let story = Dictionary(uniqueKeysWithValues: inMemory.map { line in
            let colon = line.range(of: ": ")!
            return (String(line[..<colon.lowerBound]), String(line[colon.upperBound...]))
        })
        #expect(story["mkcol d again"] == "alreadyExists")
        #expect(story["mkcol below a missing folder"] == "conflict")
        #expect(story["create d/f"] == "created true, mtime accepted true, etag true")
        #expect(story["create d/f again"] == "preconditionFailed")
        #expect(story["replace d/f over another version"] == "preconditionFailed")
        #expect(story["replace d/f over its version"] == "created false, new etag true, same id true")
        #expect(story["replace a missing file over a version"] == "preconditionFailed")
        #expect(story["put into a missing folder"] == "conflict")
        #expect(story["put onto a folder"] == "conflict")
        #expect(story["stat d/f"] == "length 20, size 20, mtime 1700000000, folder false")
        #expect(story["folder sizes"] == "d 30, root 30")
        #expect(story["dead properties after the move"] == "0755 1000 1000, -, -")
        #expect(story["file id after the move"] == "true")
        #expect(story["move a file onto a file without overwrite"] == "preconditionFailed")
        #expect(story["move a file onto a file"] == "created false, id kept true, posix 0640 1000 1000, names [\"h\"]")
        #expect(story["move a folder into itself"] == "conflict")
        #expect(story["move a missing entry"] == "notFound")
        #expect(story["move into a missing folder"] == "conflict")
        #expect(story["get a range"] == "206 5678901")
        #expect(story["get a range past the end"] == "server")
        #expect(story["get over another version"] == "preconditionFailed")
        #expect(story["list a file"] == "conflict")
        #expect(story["bulk"] == "stored, refused, refused, stored")
        #expect(story["bulk stored with its mtime"] == "1700000000")
        #expect(story["setting an mtime"] == "file etag changed true, mtime 1600000000, root etag changed true, root mtime raised false")
        #expect(story["the posix property keeps the ETag"] == "true")
        #expect(story["delete"] == "gone")
        #expect(story["delete a missing entry"] == "notFound")
        #expect(story["mkcol with a forbidden name"] == "invalidName")
    }

    /// What ingest asks beyond the file system's seam: checksums kept and cleared, link shares
    /// made and listed by path, downloads.
    static func ingestScript(_ store: any IngestStore) -> [String] {
        var lines: [String] = []
        func step(_ name: String, _ body: () throws -> String) { lines.append(Self.line(name, body)) }
        let ten = Array("0123456789".utf8)
        let sum = "SHA256:" + String(repeating: "ab", count: 32)
        func checksums(_ path: String) throws -> String { try store.stat(path, properties: .withChecksums).checksums.description }
        step("put with a checksum") {
            try store.mkcol("c")
            _ = try store.put("c/a", body: .bytes(ten), mtime: nil, conditions: .none, checksum: sum, progress: nil)
            return try checksums("c/a")
        }
        step("put without one") { try store.put("c/a", body: .bytes(ten + ten)); return try checksums("c/a") }
        step("bulk over a checksummed file") {
            _ = try store.put("c/a", body: .bytes(ten), mtime: nil, conditions: .none, checksum: sum, progress: nil)
            _ = try store.bulkUpload([BulkFile(path: "c/a", content: ten, mtime: 1_700_000_000)])
            return try checksums("c/a")
        }
        step("chunked over a checksummed file") {
            _ = try store.put("c/a", body: .bytes(ten), mtime: nil, conditions: .none, checksum: sum, progress: nil)
            let local = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-memory-script-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: local) }
            try Data(ten + ten + ten).write(to: local)
            try store.uploadChunked(local.path, to: "c/a", mtime: nil, conditions: .none, options: ChunkedUploadOptions())
            return try checksums("c/a") + ", \(try store.stat("c/a").size ?? -1) bytes"
        }
        var token = ""
        step("share a missing path") { try store.createPublicShare("missing").token }
        step("share c/a") {
            let share = try store.createPublicShare("c/a")
            token = share.token
            return "token of \(share.token.count), url ends in it \(share.url?.hasSuffix("/index.php/s/" + share.token) == true)"
        }
        step("links of c/a") { try store.publicShares(of: "c/a").map { $0.token == token ? "that one" : "another" }.description }
        step("share c/a again") {
            let second = try store.createPublicShare("c/a")
            return "new token \(second.token != token), links \(try store.publicShares(of: "c/a").count)"
        }
        step("links of c") { try store.publicShares(of: "c").count.description }
        step("links of a missing path") { try store.publicShares(of: "missing").count.description }
        step("download c/a") {
            let local = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-memory-script-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: local) }
            try store.download("c/a", to: local.path)
            return "\(try Data(contentsOf: local).count) bytes"
        }
        step("download a missing file") { try store.download("missing", to: "/tmp/ncfs-never-written"); return "ok" }
        return lines
    }

    @Test("ingest's part tells the same story on the emulator and in memory")
    func ingestPartSameAsEmulator() throws {
        let inMemory = try Self.sameStory { Self.ingestScript($0) }
        let sum = "SHA256:" + String(repeating: "ab", count: 32)
        #expect(inMemory == [
            "put with a checksum: [\"\(sum)\"]", "put without one: []", "bulk over a checksummed file: []",
            "chunked over a checksummed file: [], 30 bytes", "share a missing path: notFound",
            "share c/a: token of 15, url ends in it true", "links of c/a: [\"that one\"]", "share c/a again: new token true, links 2",
            "links of c: 0", "links of a missing path: notFound", "download c/a: 30 bytes", "download a missing file: notFound",
        ])
    }

    @Test("a fault stands instead of the call: nothing changes, the next call goes through, calls are counted")
    func faultInstead() throws {
        let store = MemoryStore()
        store.failNext([.put], with: .unavailable)
        #expect {
            try store.put("f", body: .bytes([1, 2, 3]))
        } throws: { ($0 as? DAVError)?.kind == .unavailable && ($0 as? DAVError)?.status == 503 }
        #expect(store.entry("f") == nil)
        #expect(store.pendingFaults == 0)
        try store.put("f", body: .bytes([1, 2, 3]))
        #expect(store.entry("f")?.content == [1, 2, 3])
        #expect(store.calls(.put) == 2)
        #expect(store.calls(.stat) == 0)

        // Several operations, several calls: each call meets one fault, in order.
        store.failNext([.stat, .list], with: .transport, count: 2)
        #expect { try store.stat("f") } throws: { ($0 as? DAVError)?.transport != nil }
        #expect { try store.list("") } throws: { ($0 as? DAVError)?.kind == .transport }
        #expect(try store.stat("f").contentLength == 3)
        #expect(store.calls(.stat) == 2 && store.calls(.list) == 1)
    }

    @Test("a lost answer: the PUT was stored, its retry meets its own upload")
    func lostPut() throws {
        let store = MemoryStore()
        store.failNext([.put], with: .transport, afterPerforming: true)
        #expect {
            try store.put("f", body: .bytes([7]), conditions: .init(createOnly: true))
        } throws: { ($0 as? DAVError)?.kind == .transport }
        #expect(store.entry("f")?.content == [7])
        // The retry of a "create only" PUT finds the name taken by itself.
        #expect {
            try store.put("f", body: .bytes([7]), conditions: .init(createOnly: true))
        } throws: { ($0 as? DAVError)?.kind == .preconditionFailed }
        // And a rewrite over the version the client knew meets the version it made.
        let known = store.entry("f")!.etag
        store.failNext([.put], with: .transport, afterPerforming: true)
        #expect { try store.put("f", body: .bytes([8]), conditions: .init(ifMatch: known)) } throws: { _ in true }
        #expect(store.entry("f")?.content == [8])
        #expect { try store.put("f", body: .bytes([8]), conditions: .init(ifMatch: known)) } throws: {
            ($0 as? DAVError)?.kind == .preconditionFailed
        }
    }

    @Test("a lost bulk answer: every file is stored, the caller hears a reset")
    func lostBulk() throws {
        let store = MemoryStore()
        store.failNext([.bulkUpload], with: .transport, afterPerforming: true)
        #expect {
            try store.bulkUpload([BulkFile(path: "a", content: [1], mtime: 1_700_000_000), BulkFile(path: "b", content: [2], mtime: 1_700_000_000)])
        } throws: { error in
            // Not "the endpoint is missing": bulk uploads stay on.
            guard let error = error as? DAVError else { return false }
            return error.kind == .transport && !WebDAVClient.bulkEndpointMissing(error)
        }
        #expect(store.tree().files == ["a": [1], "b": [2]])
        #expect(store.bulkUploadsAvailable())
        #expect(store.entry("a")?.mtime == 1_700_000_000)
    }

    @Test("a bulk part fails alone, or stops the request: those after it are not processed")
    func bulkParts() throws {
        let store = MemoryStore()
        let files = ["a", "b", "c", "d"].map { BulkFile(path: $0, content: Array($0.utf8), mtime: 1_700_000_000) }
        store.failBulkPart("b")
        store.failBulkPart("c", stopping: true)
        #expect(store.pendingFaults == 2)
        let outcomes = try store.bulkUpload(files)
        #expect(outcomes.count == 4)
        guard case .stored = outcomes[0], case .refused = outcomes[1] else {
            Issue.record("outcomes \(outcomes)")
            return
        }
        #expect(Array(outcomes[2...]) == [.notProcessed, .notProcessed])
        #expect(store.tree().files == ["a": Array("a".utf8)])
        #expect(store.pendingFaults == 0)
        // Met once: the same request again stores everything.
        #expect(try store.bulkUpload(files).allSatisfy { if case .stored = $0 { true } else { false } })
        #expect(store.tree().files.count == 4 && store.calls(.bulkUpload) == 2)
    }

    @Test("views share the tree; counts, faults and the bulk switch are each view's own")
    func views() throws {
        let store = MemoryStore()
        let other = store.view("write-back")
        other.failNext([.mkcol], with: .locked)
        try store.mkcol("d")
        #expect { try other.mkcol("e") } throws: { ($0 as? DAVError)?.status == 423 }
        try other.mkcol("e")
        #expect(store.tree().folders == ["", "d", "e"])
        #expect(store.calls(.mkcol) == 1 && other.calls(.mkcol) == 2)
        other.noBulkUploads("test")
        #expect(!other.bulkUploadsAvailable() && store.bulkUploadsAvailable())
    }

    @Test("a server without bulk or chunked uploads answers like one: the endpoint is missing")
    func endpointsMissing() throws {
        let store = MemoryStore(bulk: false, chunking: false)
        #expect(!store.bulkUploadsAvailable() && !store.chunkedUploadsAvailable())
        #expect {
            try store.bulkUpload([BulkFile(path: "a", content: [1], mtime: 1_700_000_000)])
        } throws: { ($0 as? DAVError).map(WebDAVClient.bulkEndpointMissing) == true }
        let local = FileManager.default.temporaryDirectory.appendingPathComponent("memory-store-\(UUID().uuidString)")
        try Data([1, 2, 3]).write(to: local)
        defer { try? FileManager.default.removeItem(at: local) }
        #expect {
            try store.uploadChunked(local.path, to: "big", mtime: nil, conditions: .none, options: ChunkedUploadOptions())
        } throws: { ($0 as? DAVError).map(WebDAVClient.uploadsEndpointMissing) == true }
        #expect(store.tree().files.isEmpty)

        // Offered: the file lands whole, with the conditions of a PUT.
        let offering = MemoryStore()
        let stored = try offering.uploadChunked(local.path, to: "big", mtime: Date(timeIntervalSince1970: 1_700_000_000),
                                                conditions: .init(createOnly: true), options: ChunkedUploadOptions())
        #expect(stored.created && stored.mtimeAccepted)
        #expect(offering.entry("big")?.content == [1, 2, 3])
        #expect {
            try offering.uploadChunked(local.path, to: "big", mtime: nil, conditions: .init(createOnly: true), options: ChunkedUploadOptions())
        } throws: { ($0 as? DAVError)?.kind == .preconditionFailed }
    }

    @Test("GET into a file and a stream; a consumer's error comes back as thrown")
    func sinks() throws {
        struct Stop: Error {}
        let store = MemoryStore()
        let content = (0..<200_000).map { UInt8($0 % 251) }
        store.serverWrite("dir/big", content)
        let local = FileManager.default.temporaryDirectory.appendingPathComponent("memory-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: local) }
        let whole = try store.get("dir/big", range: nil, ifMatch: store.entry("dir/big")!.etag, sink: .file(path: local.path))
        #expect(whole.status == 200 && whole.bytes.isEmpty)
        #expect(Array(try Data(contentsOf: local)) == content)
        var streamed: [UInt8] = []
        try store.get("dir/big", range: 1000..<150_000, sink: .stream { streamed += $0 })
        #expect(streamed == Array(content[1000..<150_000]))
        #expect { try store.get("dir/big", range: nil, sink: .stream { _ in throw Stop() }) } throws: { $0 is Stop }
        #expect { try store.get("dir/big", limit: 1000) } throws: { ($0 as? DAVError)?.transport == .responseTooLarge(limit: 1000) }
    }
}
