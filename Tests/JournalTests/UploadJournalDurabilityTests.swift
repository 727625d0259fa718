import Foundation
import Journal
import Synchronization
import Testing

@Suite("UploadJournal durability and concurrency")
struct UploadJournalDurabilityTests {
    @Test("committed rows survive the process dying with the connection open (files copied mid-run)")
    func crashCopy() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("journal.sqlite")
        let journal = try UploadJournal(path: path)
        for i in 0..<200 {
            try journal.upsert(remotePath: "photos/\(i).jpg", stagingFile: "staging/\(i)", size: Int64(i), mtime: Int64(i))
        }
        for i in stride(from: 0, to: 200, by: 3) { try journal.remove(remotePath: "photos/\(i).jpg") }
        let kept = try journal.upsert(remotePath: "photos/kept.bin", stagingFile: "staging/kept", size: 3, mtime: 1, content: [1, 2, 3])
        // A close under `close=crashsafe`: the row and its bytes in one unsynced commit.
        let quick = try journal.upsert(remotePath: "photos/quick.bin", stagingFile: "staging/quick", size: 2, mtime: 2,
                                       content: [9, 8], durability: .crashSafe)
        // The crash-safe (not fsynced) changes survive a dying process as well: they are in the WAL.
        _ = try journal.rename(from: "photos", to: "pictures")
        try journal.setState(id: kept.id, state: .uploading)
        try #require(try journal.setMtime(remotePath: "pictures/1.jpg", mtime: 77) != nil)
        let committed = try journal.all()

        // What a kill -9 or a power cut after these commits leaves on disk: the database file
        // and its WAL as they are, no checkpoint, no clean close. The -shm index is rebuilt.
        let walSize = try #require(try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int)
        #expect(walSize > 0, "the commits are in the WAL, not yet in the database file")
        let crashed = try TemporaryFolder()
        for suffix in ["", "-wal"] {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: crashed.path("journal.sqlite") + suffix)
        }

        // `ncfs status` may be the first to look, before the daemon restarts.
        #expect(try UploadJournal(readOnlyPath: crashed.path("journal.sqlite")).all() == committed)
        let database = try SQLiteDatabase(path: crashed.path("journal.sqlite"))
        #expect(try database.integrityCheck() == "ok")
        let recovered = try UploadJournal(path: crashed.path("journal.sqlite"))
        #expect(try recovered.all() == committed)
        #expect(try recovered.content(id: kept.id) == [1, 2, 3])
        #expect(try recovered.content(id: quick.id) == [9, 8])
        #expect(committed.count == 135 && committed.allSatisfy { $0.remotePath.hasPrefix("pictures/") })
        #expect(committed.first { $0.id == kept.id }?.state == .uploading)
        #expect(committed.first { $0.remotePath == "pictures/1.jpg" }?.mtime == 77)
    }

    @Test("rows survive close and reopen; a reader in another process sees the daemon's commits",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3"), "needs the sqlite3 command"))
    func otherProcessReader() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("journal.sqlite")
        do {
            let journal = try UploadJournal(path: path)
            try journal.upsert(remotePath: "one", stagingFile: "s1", size: 1, mtime: 1)
        }
        let journal = try UploadJournal(path: path)
        #expect(try journal.paths() == ["one"])
        try journal.upsert(remotePath: "two", stagingFile: "s2", size: 2, mtime: 2)
        // The daemon keeps its connection open; its last commit is only in the WAL.
        #expect(try sqlite3(path, "SELECT group_concat(remote_path, ',') FROM (SELECT remote_path FROM uploads ORDER BY id)") == "one,two")
    }

    @Test("a read-only journal reads what an open writer commits, and cannot write")
    func readOnlyJournal() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("journal.sqlite")
        let writer = try UploadJournal(path: path)
        let reader = try UploadJournal(readOnlyPath: path)
        #expect(try reader.summary().count == 0)
        let u = try writer.upsert(remotePath: "big.mov", stagingFile: "s", size: 1 << 30, mtime: 1)
        #expect(try reader.summary() == UploadJournal.Summary(count: 1, bytes: 1 << 30, oldestCreatedAt: u.createdAt, failed: 0))
        #expect(try reader.all() == [u])
        #expect(try #require(throws: SQLiteError.self) { try reader.recoverInterrupted() }.primaryCode == 8 /* SQLITE_READONLY */)
        try writer.setState(id: u.id, state: .failed, error: "x")
        #expect(try reader.summary().failed == 1)
    }

    @Test("8 threads upserting, renaming, completing and removing leave exactly the expected rows")
    func concurrency() throws {
        let folder = try TemporaryFolder()
        let journal = try UploadJournal(path: folder.path("journal.sqlite"))
        let threads = 8, rounds = 40
        let failures = Mutex<[String]>([])
        let done = DispatchGroup()
        for t in 0..<threads {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    for k in 0..<rounds {
                        let u = try journal.upsert(remotePath: "t\(t)/f\(k)", stagingFile: "s\(t)-\(k)", size: 1, mtime: 1)
                        try journal.upsert(remotePath: "shared", stagingFile: "shared", size: 1, mtime: 1)
                        switch k % 4 {
                        case 0:
                            guard try journal.complete(id: u.id, generation: u.generation, serverETag: "e") else {
                                throw SQLiteError(code: 0, message: "complete of t\(t)/f\(k) refused", sql: nil)
                            }
                        case 1:
                            _ = try journal.rename(from: "t\(t)/f\(k)", to: "t\(t)/renamed/f\(k)")
                            if try journal.complete(id: u.id, generation: u.generation, serverETag: "e") {
                                throw SQLiteError(code: 0, message: "stale complete of t\(t)/f\(k) accepted", sql: nil)
                            }
                        case 2:
                            try journal.remove(remotePath: "t\(t)/f\(k)")
                        default:
                            try journal.setState(id: u.id, state: .uploading)
                        }
                    }
                    _ = try journal.rename(from: "t\(t)/renamed", to: "t\(t)/moved")
                } catch {
                    failures.withLock { $0.append("thread \(t): \(error)") }
                }
            }.start()
        }
        done.wait()
        #expect(failures.withLock { $0 } == [])

        let rows = try journal.all()
        let shared = try #require(rows.first { $0.remotePath == "shared" })
        #expect(shared.generation == Int64(threads * rounds), "every upsert of one path counted once")
        var expected = ["shared"]
        for t in 0..<threads {
            for k in 0..<rounds where k % 4 == 1 { expected.append("t\(t)/moved/f\(k)") }
            for k in 0..<rounds where k % 4 == 3 { expected.append("t\(t)/f\(k)") }
        }
        #expect(rows.map(\.remotePath).sorted() == expected.sorted())
        #expect(rows.filter { $0.state == .uploading }.count == threads * rounds / 4)
        #expect(Set(rows.map(\.id)).count == rows.count)
        #expect(try SQLiteDatabase(path: folder.path("journal.sqlite")).integrityCheck() == "ok")
    }
}

/// Runs one statement with the sqlite3 command in its own process, read-only, and returns its output.
private func sqlite3(_ path: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = ["-readonly", path, sql]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
