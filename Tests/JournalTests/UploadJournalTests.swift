import Foundation
import Journal
import Testing

@Suite("UploadJournal")
struct UploadJournalTests {
    @Test("every field round-trips, through a reopen and a read-only opener")
    func roundTrip() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("journal.sqlite")
        let before = Date().timeIntervalSince1970
        var expected: PendingUpload
        do {
            let journal = try UploadJournal(path: path)
            let recorded = try journal.upsert(remotePath: "Photos/2024/IMG_0001.jpg", stagingFile: "/var/cache/ncfs/staging/17",
                                              size: 4_000_000_123, mtime: 1_700_000_000, baseETag: "\"5f1e-abc\"")
            #expect(recorded.remotePath == "Photos/2024/IMG_0001.jpg" && recorded.stagingFile == "/var/cache/ncfs/staging/17")
            #expect(recorded.size == 4_000_000_123 && recorded.mtime == 1_700_000_000 && recorded.baseETag == "\"5f1e-abc\"")
            #expect(recorded.state == .pending && recorded.attempts == 0 && recorded.generation == 1)
            #expect(recorded.lastError == nil && recorded.chunkUploadID == nil)
            #expect(recorded.createdAt == recorded.updatedAt && recorded.createdAt.timeIntervalSince1970 >= before)
            #expect(try journal.setState(id: recorded.id, state: .uploading))
            #expect(try journal.setChunkUploadID(id: recorded.id, uploadID: "ncfs-upload-42"))
            #expect(try journal.setState(id: recorded.id, state: .failed, error: "507 Insufficient Storage"))
            expected = try #require(try journal.upload(at: "Photos/2024/IMG_0001.jpg"))
            #expect(expected.state == .failed && expected.attempts == 1 && expected.lastError == "507 Insufficient Storage")
            #expect(expected.chunkUploadID == "ncfs-upload-42" && expected.generation == 1 && expected.id == recorded.id)
            #expect(expected.createdAt == recorded.createdAt && expected.updatedAt >= recorded.updatedAt)
            #expect(try journal.all() == [expected])
        }
        #expect(try UploadJournal(path: path).all() == [expected])
        #expect(try UploadJournal(readOnlyPath: path).upload(at: expected.remotePath) == expected)
    }

    @Test("a path without a base ETag (new on the server) stays nil; nil in a later upsert keeps the base")
    func baseETag() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        #expect(try journal.upsert(remotePath: "new.txt", stagingFile: "s1", size: 1, mtime: 1).baseETag == nil)
        #expect(try journal.upsert(remotePath: "new.txt", stagingFile: "s1", size: 2, mtime: 2).baseETag == nil)
        #expect(try journal.upsert(remotePath: "old.txt", stagingFile: "s2", size: 1, mtime: 1, baseETag: "e1").baseETag == "e1")
        #expect(try journal.upsert(remotePath: "old.txt", stagingFile: "s2", size: 2, mtime: 2).baseETag == "e1")
        #expect(try journal.upsert(remotePath: "old.txt", stagingFile: "s2", size: 3, mtime: 3, baseETag: "e2").baseETag == "e2")
    }

    @Test("upsert raises the generation and resets state; complete of an older generation keeps the row")
    func generations() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let first = try journal.upsert(remotePath: "doc.odt", stagingFile: "s/1", size: 10, mtime: 100, baseETag: "e0")
        try journal.setState(id: first.id, state: .uploading, error: "previous failure")
        try journal.setChunkUploadID(id: first.id, uploadID: "chunks-1")

        // The file is written again while generation 1 uploads.
        let second = try journal.upsert(remotePath: "doc.odt", stagingFile: "s/2", size: 20, mtime: 200)
        #expect(second.id == first.id && second.generation == 2 && second.createdAt == first.createdAt)
        #expect(second.state == .pending && second.attempts == 0 && second.lastError == nil && second.chunkUploadID == nil)
        #expect(second.stagingFile == "s/2" && second.size == 20 && second.mtime == 200 && second.baseETag == "e0")

        // Generation 1 reaches the server: the row stays, now based on the ETag that upload produced.
        #expect(try journal.complete(id: first.id, generation: 1, serverETag: "e1") == false)
        let kept = try #require(try journal.upload(at: "doc.odt"))
        #expect(kept.generation == 2 && kept.baseETag == "e1" && kept.state == .pending)
        #expect(try journal.complete(id: first.id, generation: 1, serverETag: nil) == false)
        #expect(try journal.upload(at: "doc.odt")?.baseETag == "e1", "an unknown ETag keeps the base")

        #expect(try journal.complete(id: first.id, generation: 2, serverETag: "e2"))
        #expect(try journal.upload(at: "doc.odt") == nil)
        #expect(try journal.complete(id: first.id, generation: 2, serverETag: "e2") == false, "already gone")
    }

    @Test("ids are never reused: a late completion cannot remove a newer row")
    func idsNotReused() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let old = try journal.upsert(remotePath: "a", stagingFile: "s", size: 1, mtime: 1)
        try journal.remove(remotePath: "a")
        let new = try journal.upsert(remotePath: "a", stagingFile: "s", size: 1, mtime: 1)
        #expect(new.id != old.id && new.generation == old.generation)
        #expect(try journal.complete(id: old.id, generation: old.generation, serverETag: "x") == false)
        #expect(try journal.upload(at: "a") == new)
    }

    @Test("setState counts attempts when an upload starts and keeps the last error unless given one")
    func states() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let u = try journal.upsert(remotePath: "x", stagingFile: "s", size: 1, mtime: 1)
        try journal.setState(id: u.id, state: .uploading)
        try journal.setState(id: u.id, state: .pending, error: "timed out")
        try journal.setState(id: u.id, state: .uploading)
        var now = try #require(try journal.upload(at: "x"))
        #expect(now.attempts == 2 && now.state == .uploading && now.lastError == "timed out")
        try journal.setState(id: u.id, state: .failed, error: "403 Forbidden")
        now = try #require(try journal.upload(at: "x"))
        #expect(now.attempts == 2 && now.state == .failed && now.lastError == "403 Forbidden")
        try journal.setChunkUploadID(id: u.id, uploadID: "c")
        try journal.setChunkUploadID(id: u.id, uploadID: nil)
        #expect(try journal.upload(at: "x")?.chunkUploadID == nil)
        #expect(try journal.setState(id: 999, state: .uploading) == false)
        #expect(try journal.setChunkUploadID(id: 999, uploadID: "c") == false)
        // An attempt that left a broken copy moves the base on to that copy's ETag.
        #expect(try journal.setBaseETag(id: u.id, etag: "\"broken\""))
        #expect(try journal.upload(at: "x")?.baseETag == "\"broken\"")
        #expect(try journal.setBaseETag(id: 999, etag: "e") == false)
    }

    @Test("setMtime makes a new generation of a pending upload and returns it; nil when nothing is pending")
    func mtime() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let u = try journal.upsert(remotePath: ".IMG.jpg.x1Y2z3", stagingFile: "s", size: 1, mtime: 1, content: [7])
        try journal.setState(id: u.id, state: .uploading)
        let returned = try #require(try journal.setMtime(remotePath: ".IMG.jpg.x1Y2z3", mtime: 1_600_000_000))
        let changed = try #require(try journal.upload(at: ".IMG.jpg.x1Y2z3"))
        #expect(returned == changed)
        #expect(changed.mtime == 1_600_000_000 && changed.generation == 2 && changed.state == .pending && changed.attempts == 0)
        #expect(try journal.content(id: u.id) == [7], "a new mtime keeps the bytes kept in the row")
        #expect(try journal.setMtime(remotePath: "not-pending", mtime: 5) == nil)
    }

    @Test("a small file's bytes kept in its row: read back by id, replaced or dropped by the next upsert, gone with the row")
    func keptContent() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let bytes = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let u = try journal.upsert(remotePath: "a.bin", stagingFile: "s1", size: Int64(bytes.count), mtime: 1, content: bytes)
        #expect(try journal.content(id: u.id) == bytes)
        #expect(try journal.all() == [u], "listing rows does not need their bytes")
        let empty = try journal.upsert(remotePath: "empty", stagingFile: "s2", size: 0, mtime: 1, content: [])
        #expect(try journal.content(id: empty.id) == [], "an empty file keeps an empty content, not none")

        // Grown past the inline size: fsynced in place, and the old bytes must not come back.
        let v2 = try journal.upsert(remotePath: "a.bin", stagingFile: "s3", size: 5_000_000, mtime: 2)
        #expect(v2.id == u.id && v2.generation == 2)
        #expect(try journal.content(id: u.id) == nil)
        let v3 = try journal.upsert(remotePath: "a.bin", stagingFile: "s4", size: 3, mtime: 3, content: [1, 2, 3])
        #expect(try journal.content(id: v3.id) == [1, 2, 3])

        _ = try journal.rename(from: "a.bin", to: "b.bin")
        #expect(try journal.content(id: v3.id) == [1, 2, 3], "the bytes follow a rename")
        #expect(try journal.complete(id: v3.id, generation: try #require(try journal.upload(at: "b.bin")).generation, serverETag: "e"))
        #expect(try journal.content(id: v3.id) == nil)
    }

    @Test("a version-1 journal (no content column) opens as version 2 with its rows intact")
    func migration() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("j.sqlite")
        do {
            let old = try SQLiteDatabase(path: path)
            try old.execute("""
                CREATE TABLE uploads (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, remote_path TEXT NOT NULL UNIQUE, staging_file TEXT NOT NULL,
                    size INTEGER NOT NULL, mtime INTEGER NOT NULL, base_etag TEXT,
                    state TEXT NOT NULL CHECK (state IN ('pending', 'uploading', 'failed')), attempts INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT, chunk_upload_id TEXT, generation INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
                ) STRICT
                """)
            try old.execute("""
                INSERT INTO uploads (remote_path, staging_file, size, mtime, state, generation, created_at, updated_at)
                VALUES ('kept.txt', 'staging/1', 5, 9, 'uploading', 3, 1, 1)
                """)
            try old.execute("PRAGMA user_version = 1")
        }
        let journal = try UploadJournal(path: path)
        let row = try #require(try journal.upload(at: "kept.txt"))
        #expect(row.stagingFile == "staging/1" && row.size == 5 && row.generation == 3)
        #expect(try journal.content(id: row.id) == nil)
        let next = try journal.upsert(remotePath: "new.txt", stagingFile: "staging/2", size: 2, mtime: 1, content: [1, 2])
        #expect(try journal.content(id: next.id) == [1, 2])
        #expect(try SQLiteDatabase(path: path).userVersion() == UploadJournal.schemaVersion)
    }

    @Test("paths are stored NFC without outer slashes, whatever spelling a call uses")
    func normalisation() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let decomposed = "/Cafe\u{301}/cre\u{300}me.txt"
        let composed = "Caf\u{E9}/cr\u{E8}me.txt"
        #expect(try journal.upsert(remotePath: decomposed, stagingFile: "s", size: 1, mtime: 1).remotePath.utf8.elementsEqual(composed.utf8))
        #expect(try journal.upsert(remotePath: composed + "/", stagingFile: "s", size: 2, mtime: 1).generation == 2)
        #expect(try journal.all().count == 1)
        #expect(try journal.upload(at: decomposed)?.size == 2)
        #expect(try journal.remove(remotePath: "Cafe\u{301}/cre\u{300}me.txt") != nil)
    }

    @Test("rename moves a pending file: no row stays under the old name")
    func renameFile() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        let u = try journal.upsert(remotePath: "docs/.report.pdf.Ab12Cd", stagingFile: "s", size: 5, mtime: 7, baseETag: "e")
        try journal.setState(id: u.id, state: .uploading)
        try journal.setChunkUploadID(id: u.id, uploadID: "c")
        let outcome = try journal.rename(from: "docs/.report.pdf.Ab12Cd", to: "docs/report.pdf")
        #expect(outcome == UploadJournal.RenameOutcome(generations: [u.id: 2], replaced: nil))
        #expect(try journal.paths() == ["docs/report.pdf"])
        let renamed = try #require(try journal.upload(at: "docs/report.pdf"))
        #expect(renamed.id == u.id && renamed.generation == 2 && renamed.state == .pending && renamed.attempts == 0)
        #expect(renamed.chunkUploadID == nil && renamed.mtime == 7 && renamed.baseETag == "e" && renamed.stagingFile == "s")
        // The attempt that was running under the old name cannot complete the renamed row.
        #expect(try journal.complete(id: u.id, generation: 1, serverETag: "e1") == false)
        #expect(try journal.rename(from: "docs/report.pdf", to: "/docs/report.pdf/") == UploadJournal.RenameOutcome(generations: [:], replaced: nil))
        #expect(try journal.rename(from: "nothing", to: "here").renamed == 0)
    }

    @Test("rename over a pending file replaces it, and returns it for its staging file")
    func renameOverPending() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        try journal.upsert(remotePath: "a.txt", stagingFile: "sa", size: 1, mtime: 1)
        let b = try journal.upsert(remotePath: "b.txt", stagingFile: "sb", size: 2, mtime: 2)
        let outcome = try journal.rename(from: "a.txt", to: "b.txt")
        #expect(outcome.renamed == 1 && outcome.replaced == b)
        #expect(try journal.paths() == ["b.txt"])
        #expect(try journal.upload(at: "b.txt")?.stagingFile == "sa")

        // A file that is not pending renamed over one that is: the pending content is gone too.
        let c = try journal.upsert(remotePath: "c.txt", stagingFile: "sc", size: 3, mtime: 3)
        #expect(try journal.rename(from: "on-server-only.txt", to: "c.txt") == UploadJournal.RenameOutcome(generations: [:], replaced: c))
        #expect(try journal.paths() == ["b.txt"])
    }

    @Test("rename can set the renamed file's base ETag in the same step; its folder neighbours keep theirs")
    func renameWithBase() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        try journal.upsert(remotePath: "new.txt", stagingFile: "s1", size: 1, mtime: 1)
        #expect(try journal.rename(from: "new.txt", to: "existing.txt", baseETag: "server-etag").renamed == 1)
        #expect(try journal.upload(at: "existing.txt")?.baseETag == "server-etag")
        #expect(try journal.rename(from: "existing.txt", to: "free.txt", baseETag: nil).renamed == 1)
        #expect(try journal.upload(at: "free.txt")?.baseETag == nil)
        try journal.upsert(remotePath: "d/a", stagingFile: "s2", size: 1, mtime: 1, baseETag: "a-etag")
        #expect(try journal.rename(from: "d", to: "e", baseETag: "folder-etag").renamed == 1)
        #expect(try journal.upload(at: "e/a")?.baseETag == "a-etag")
    }

    /// Names chosen to break a LIKE pattern, a byte-counted substring and a naive prefix test.
    static let tree = [
        "dir/a%b_c.txt", "dir/it's \"quoted\".jpg", "dir/sub/\u{E9}t\u{E9}.png", "dir/sub/deeper/x",
        "dir2/x", "dirx", "dir-x", "dir.txt", "dir0/y", "di_/y", "di%/z", "DIR/upper",
        "Caf\u{E9}/\u{FC}ber.jpg", "Caf\u{E9}x/no",
    ]

    @Test("rename of a folder moves everything below it and nothing beside it")
    func renameFolder() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        for (i, path) in Self.tree.enumerated() { try journal.upsert(remotePath: path, stagingFile: "s\(i)", size: Int64(i), mtime: 1) }
        let before = try journal.all()

        #expect(try journal.rename(from: "dir", to: "new 100%_dir").renamed == 4)
        #expect(try journal.rename(from: "di_", to: "underscore").renamed == 1)
        #expect(try journal.rename(from: "di%", to: "percent").renamed == 1)
        // Given decomposed: the row is found by its NFC form, and the cut is by characters, not bytes.
        #expect(try journal.rename(from: "Cafe\u{301}", to: "Caff\u{E8}").renamed == 1)
        let expected = [
            "new 100%_dir/a%b_c.txt", "new 100%_dir/it's \"quoted\".jpg", "new 100%_dir/sub/\u{E9}t\u{E9}.png",
            "new 100%_dir/sub/deeper/x", "dir2/x", "dirx", "dir-x", "dir.txt", "dir0/y", "underscore/y", "percent/z", "DIR/upper",
            "Caff\u{E8}/\u{FC}ber.jpg", "Caf\u{E9}x/no",
        ]
        #expect(try journal.paths() == expected.sorted())
        // Each row kept its own data and id.
        let after = try journal.all()
        for (old, new) in zip(before, after) { #expect(old.id == new.id && old.stagingFile == new.stagingFile && old.size == new.size) }

        // The outcome names each moved row with its new generation, as the rows hold it.
        let moved = try journal.rename(from: "new 100%_dir/sub", to: "dir2/sub")
        let rows = try journal.all().filter { $0.remotePath.hasPrefix("dir2/sub/") }
        #expect(moved.renamed == 2 && moved.generations == Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.generation) }))
        #expect(rows.allSatisfy { $0.generation == 3 })
        #expect(try journal.paths().filter { $0.hasPrefix("dir2/") } == ["dir2/sub/deeper/x", "dir2/sub/\u{E9}t\u{E9}.png", "dir2/x"])
    }

    @Test("a folder rename that would collide fails whole and changes nothing")
    func renameCollision() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        try journal.upsert(remotePath: "d/x", stagingFile: "1", size: 1, mtime: 1)
        try journal.upsert(remotePath: "d/y", stagingFile: "2", size: 1, mtime: 1)
        try journal.upsert(remotePath: "e/y", stagingFile: "3", size: 1, mtime: 1)
        let before = try journal.all()
        let error = try #require(throws: SQLiteError.self) { _ = try journal.rename(from: "d", to: "e") }
        #expect(error.code == 2067 /* SQLITE_CONSTRAINT_UNIQUE */)
        #expect(try journal.all() == before)
    }

    @Test("remove and removeTree return what they removed and leave neighbours")
    func removal() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        for (i, path) in Self.tree.enumerated() { try journal.upsert(remotePath: path, stagingFile: "s\(i)", size: 1, mtime: 1) }
        #expect(try journal.remove(remotePath: "dir/it's \"quoted\".jpg")?.stagingFile == "s1")
        #expect(try journal.remove(remotePath: "dir/it's \"quoted\".jpg") == nil)
        #expect(try journal.removeTree(prefix: "dir").map(\.remotePath).sorted() == ["dir/a%b_c.txt", "dir/sub/deeper/x", "dir/sub/\u{E9}t\u{E9}.png"])
        #expect(try journal.removeTree(prefix: "di_").map(\.remotePath) == ["di_/y"])
        #expect(try journal.removeTree(prefix: "dirx").map(\.remotePath) == ["dirx"], "a file is a tree of one")
        #expect(try journal.removeTree(prefix: "nothing") == [])
        #expect(try journal.paths() == ["Caf\u{E9}/\u{FC}ber.jpg", "Caf\u{E9}x/no", "DIR/upper", "di%/z", "dir-x", "dir.txt", "dir0/y", "dir2/x"])
    }

    @Test("recoverInterrupted puts uploads a dead daemon left running back to pending")
    func recovery() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("j.sqlite")
        do {
            let journal = try UploadJournal(path: path)
            for name in ["a", "b", "c", "d"] { try journal.upsert(remotePath: name, stagingFile: name, size: 1, mtime: 1) }
            let ids = try journal.all().map(\.id)
            try journal.setState(id: ids[0], state: .uploading)
            try journal.setState(id: ids[1], state: .uploading)
            try journal.setChunkUploadID(id: ids[1], uploadID: "resume-me")
            try journal.setState(id: ids[2], state: .failed, error: "gave up")
        }
        let journal = try UploadJournal(path: path)
        #expect(try journal.recoverInterrupted() == 2)
        let states = try journal.all().map { "\($0.remotePath) \($0.state.rawValue) \($0.attempts)" }
        #expect(states == ["a pending 1", "b pending 1", "c failed 0", "d pending 0"])
        #expect(try journal.upload(at: "b")?.chunkUploadID == "resume-me")
        #expect(try journal.recoverInterrupted() == 0)
    }

    @Test("all() is oldest first; summary counts, bytes, age and failures")
    func listing() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("j.sqlite"))
        #expect(try journal.summary() == UploadJournal.Summary(count: 0, bytes: 0, oldestCreatedAt: nil, failed: 0))
        let first = try journal.upsert(remotePath: "z-first", stagingFile: "1", size: 100, mtime: 1)
        try journal.upsert(remotePath: "a-second", stagingFile: "2", size: 20, mtime: 1)
        let third = try journal.upsert(remotePath: "m-third", stagingFile: "3", size: 3, mtime: 1)
        try journal.upsert(remotePath: "z-first", stagingFile: "1", size: 1000, mtime: 2)
        try journal.setState(id: third.id, state: .failed, error: "no")
        #expect(try journal.all().map(\.remotePath) == ["z-first", "a-second", "m-third"])
        #expect(try journal.summary() == UploadJournal.Summary(count: 3, bytes: 1023, oldestCreatedAt: first.createdAt, failed: 1))
    }

    @Test("the journal file is 0600; a newer schema or a foreign file is refused with an SQLiteError")
    func files() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("j.sqlite")
        _ = try UploadJournal(path: path)
        #expect(try mode(path) == 0o600)

        let newer = folder.path("newer.sqlite")
        let future = UploadJournal.schemaVersion + 1
        try SQLiteDatabase(path: newer).transaction { tx throws(SQLiteError) in try tx.setUserVersion(future) }
        let refused = try #require(throws: SQLiteError.self) { _ = try UploadJournal(path: newer) }
        #expect(refused.message.contains("user_version \(future)"))
        #expect(throws: SQLiteError.self) { _ = try UploadJournal(readOnlyPath: newer) }

        let empty = folder.path("empty.sqlite")
        _ = try SQLiteDatabase(path: empty)
        #expect(throws: SQLiteError.self) { _ = try UploadJournal(readOnlyPath: empty) }

        let garbage = folder.path("garbage.sqlite")
        try Data("this is not a database, just text that fills the header and more".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(try #require(throws: SQLiteError.self) { _ = try UploadJournal(path: garbage) }.code == 26)
        #expect(try #require(throws: SQLiteError.self) { _ = try UploadJournal(readOnlyPath: garbage) }.code == 26)
    }
}
