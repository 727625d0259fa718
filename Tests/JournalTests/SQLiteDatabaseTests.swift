import Foundation
import SQLiteStore
import Testing

@Suite("SQLiteDatabase")
struct SQLiteDatabaseTests {
    @Test("every storage class round-trips, including empty text and blob, NUL and non-ASCII")
    func values() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("values.sqlite"))
        try db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v ANY) STRICT")
        let values: [SQLiteValue] = [
            .integer(.min), .integer(.max), 0, .real(1.5), .real(-0.25), "", "a\u{0}b", "é😀 'quoted' \"double\"",
            .blob([]), .blob([0, 1, 255]), SQLiteValue(Data([9, 8])), .null, SQLiteValue(nil as String?),
        ]
        for (i, v) in values.enumerated() { try db.execute("INSERT INTO t VALUES (?, ?)", [SQLiteValue(i), v]) }
        let rows = try db.query("SELECT i, v AS value FROM t ORDER BY i")
        #expect(rows.map { $0["value"] } == values)
        #expect(rows.first?.columns == ["i", "value"])
        #expect(rows[3]["value"].double == 1.5 && rows[2]["value"].double == 0)
        #expect(rows[7]["value"].string == "é😀 'quoted' \"double\"")
        #expect(rows[10]["value"].data == Data([9, 8]) && rows[9]["value"].bytes == [0, 1, 255])
        #expect(rows[11]["value"].isNull && rows[11]["missing column"].isNull)
        #expect(try rows[0].int64("value") == .min)
        #expect(try rows[5].string("value") == "")
        #expect(try rows[9].bytes("value") == [0, 1, 255])
    }

    @Test("a NOT NULL accessor on NULL or another type throws SQLITE_MISMATCH naming the column")
    func mismatch() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("m.sqlite"))
        let row = try #require(try db.query("SELECT 'text' AS name, NULL AS absent").first)
        let wrongType = try #require(throws: SQLiteError.self) { _ = try row.int64("name") }
        #expect(wrongType.code == 20 && wrongType.message.contains("name") && wrongType.message.contains("TEXT"))
        #expect(!wrongType.message.contains("'text'"), "the value itself stays out of messages")
        #expect(try #require(throws: SQLiteError.self) { _ = try row.double("absent") }.code == 20)
    }

    @Test("errors carry the result code, SQLite's message and the statement")
    func errors() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("e.sqlite"))
        let syntax = try #require(throws: SQLiteError.self) { try db.execute("SELEC 1") }
        #expect(syntax.code == 1 && syntax.message.contains("syntax error") && syntax.sql == "SELEC 1")
        #expect(syntax.description.contains("SELEC 1"))

        try db.execute("CREATE TABLE u (k TEXT UNIQUE)")
        try db.execute("INSERT INTO u VALUES (?)", ["x"])
        let unique = try #require(throws: SQLiteError.self) { try db.execute("INSERT INTO u VALUES (?)", ["x"]) }
        #expect(unique.code == 2067 /* SQLITE_CONSTRAINT_UNIQUE */ && unique.primaryCode == 19 && unique.message.contains("UNIQUE"))

        #expect(try #require(throws: SQLiteError.self) { try db.execute("SELECT 1; SELECT 2") }.code == 21 /* SQLITE_MISUSE */)
        #expect(try #require(throws: SQLiteError.self) { try db.execute("  ") }.code == 21)
        #expect(try #require(throws: SQLiteError.self) { try db.execute("SELECT ?", []) }.code == 25 /* SQLITE_RANGE */)
        #expect(try #require(throws: SQLiteError.self) { try db.execute("SELECT 1", [1]) }.code == 25)
        #expect(try db.query("SELECT 1;  \n").count == 1, "a trailing semicolon and blanks are one statement")
    }

    @Test("execute counts the rows a statement changed, not those of an earlier one")
    func changes() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("c.sqlite"))
        try db.execute("CREATE TABLE t (v INTEGER)")
        #expect(try db.execute("INSERT INTO t VALUES (1), (2), (3)") == 3)
        #expect(try db.execute("UPDATE t SET v = v + 1 WHERE v > 1") == 2)
        #expect(try db.execute("CREATE TABLE other (v)") == 0)
        #expect(try db.execute("DELETE FROM t") == 3)
    }

    @Test("a transaction commits on return and rolls back on a throw")
    func transactions() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("t.sqlite"))
        try db.execute("CREATE TABLE t (v INTEGER NOT NULL)")
        let count = try db.transaction { tx throws(SQLiteError) in
            try tx.execute("INSERT INTO t VALUES (1)")
            try tx.execute("INSERT INTO t VALUES (2)")
            return try tx.query("SELECT count(*) FROM t")[0][0].int64
        }
        #expect(count == 2)
        let failure = try #require(throws: SQLiteError.self) {
            try db.transaction { tx throws(SQLiteError) in
                try tx.execute("INSERT INTO t VALUES (3)")
                try tx.execute("INSERT INTO t VALUES (NULL)")
            }
        }
        #expect(failure.primaryCode == 19)
        #expect(try db.query("SELECT v FROM t ORDER BY v").map { $0[0] } == [1, 2])
        // The connection is usable again: the failed transaction did not stay open.
        try db.transaction { tx throws(SQLiteError) in try tx.execute("INSERT INTO t VALUES (4)") }
        #expect(try db.query("SELECT count(*) FROM t")[0][0] == 3)
    }

    @Test("user_version starts at 0 and is kept in the file")
    func userVersion() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("v.sqlite")
        do {
            let db = try SQLiteDatabase(path: path)
            #expect(try db.userVersion() == 0)
            try db.transaction { tx throws(SQLiteError) in try tx.setUserVersion(7) }
        }
        #expect(try SQLiteDatabase(path: path).userVersion() == 7)
        #expect(try SQLiteDatabase(readOnlyPath: path).userVersion() == 7)
    }

    @Test("a crash-safe statement or transaction runs with synchronous=NORMAL; the next default one is FULL again; prepared statements are reused")
    func durabilityPerStatement() throws {
        let folder = try TemporaryFolder()
        let db = try SQLiteDatabase(path: folder.path("d.sqlite"))
        try db.execute("CREATE TABLE t (v)")
        try db.execute("INSERT INTO t VALUES (1)", durability: .crashSafe)
        #expect(try db.query("PRAGMA synchronous", durability: .crashSafe)[0][0] == 1 /* NORMAL */)
        #expect(try db.query("PRAGMA synchronous")[0][0] == 2 /* FULL */)
        try db.transaction(durability: .crashSafe) { tx throws(SQLiteError) in
            #expect(try tx.query("PRAGMA synchronous")[0][0] == 1)
            try tx.execute("INSERT INTO t VALUES (2)")
        }
        #expect(try db.query("PRAGMA synchronous")[0][0] == 2)
        // The same statement text again, with other bindings: a cached statement, reset and rebound.
        for v in 3...5 { try db.execute("INSERT INTO t VALUES (?)", [.integer(Int64(v))]) }
        #expect(try db.query("SELECT sum(v) FROM t")[0][0] == 15)
        #expect(try db.query("SELECT v FROM t WHERE v = ?", [.integer(4)])[0][0] == 4)
        #expect(try db.query("SELECT v FROM t WHERE v = ?", [.integer(5)])[0][0] == 5)
    }

    @Test("WAL, synchronous=FULL and foreign keys are on; the file and its -wal/-shm are 0600")
    func settings() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("s.sqlite")
        // A file left 0644 (by hand or an older version) is tightened, not trusted.
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644])
        let db = try SQLiteDatabase(path: path)
        #expect(try db.query("PRAGMA journal_mode")[0][0] == "wal")
        #expect(try db.query("PRAGMA synchronous")[0][0] == 2 /* FULL */)
        #expect(try db.query("PRAGMA foreign_keys")[0][0] == 1)
        #expect(try db.query("PRAGMA busy_timeout")[0][0] == 5000)
        try db.execute("CREATE TABLE t (v)")
        try db.execute("INSERT INTO t VALUES (1)")
        #expect(try mode(path) == 0o600)
        #expect(try mode(path + "-wal") == 0o600)
        #expect(try mode(path + "-shm") == 0o600)
        #expect(try db.integrityCheck() == "ok")
    }

    @Test("a read-only connection sees each commit of a concurrent writer and cannot write")
    func readOnly() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("r.sqlite")
        let writer = try SQLiteDatabase(path: path)
        try writer.execute("CREATE TABLE t (v INTEGER)")
        let reader = try SQLiteDatabase(readOnlyPath: path)
        for i in 1...3 {
            try writer.execute("INSERT INTO t VALUES (?)", [SQLiteValue(i)])
            #expect(try reader.query("SELECT count(*) FROM t")[0][0] == SQLiteValue(i))
        }
        #expect(try #require(throws: SQLiteError.self) { try reader.execute("INSERT INTO t VALUES (9)") }.primaryCode == 8 /* SQLITE_READONLY */)
        // A writer's transaction in progress is invisible to the reader, and does not block it.
        try writer.transaction { tx throws(SQLiteError) in
            try tx.execute("INSERT INTO t VALUES (4)")
            #expect(try reader.query("SELECT count(*) FROM t")[0][0] == 3)
        }
        #expect(try reader.query("SELECT count(*) FROM t")[0][0] == 4)
    }

    @Test("a read-only connection opens a database whose writer has closed (no -wal left)")
    func readOnlyAfterClose() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("closed.sqlite")
        do {
            let writer = try SQLiteDatabase(path: path)
            try writer.execute("CREATE TABLE t (v INTEGER)")
            try writer.execute("INSERT INTO t VALUES (1)")
        }
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"), "the last connection checkpoints and removes the WAL")
        #expect(try SQLiteDatabase(readOnlyPath: path).query("SELECT v FROM t").map { $0[0] } == [1])
    }

    @Test("unusable files give an SQLiteError naming the path: missing, a folder, not a database")
    func unusableFiles() throws {
        let folder = try TemporaryFolder()
        let missingParent = try #require(throws: SQLiteError.self) { _ = try SQLiteDatabase(path: folder.path("no/such/db.sqlite")) }
        #expect(missingParent.code == 14 /* SQLITE_CANTOPEN */ && missingParent.message.contains("no/such/db.sqlite"))
        #expect(missingParent.message.contains("No such file"))

        let isFolder = try #require(throws: SQLiteError.self) { _ = try SQLiteDatabase(path: folder.url.path) }
        #expect(isFolder.code == 14 && isFolder.message.contains("Is a directory"))

        let missing = try #require(throws: SQLiteError.self) { _ = try SQLiteDatabase(readOnlyPath: folder.path("missing.sqlite")) }
        #expect(missing.code == 14 && missing.message.contains("missing.sqlite"))

        let garbage = folder.path("garbage.sqlite")
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: garbage))
        let notADatabase = try #require(throws: SQLiteError.self) { _ = try SQLiteDatabase(path: garbage) }
        #expect(notADatabase.code == 26 /* SQLITE_NOTADB */ && notADatabase.message.contains("not a database"))
        #expect(try #require(throws: SQLiteError.self) { _ = try SQLiteDatabase(readOnlyPath: garbage).userVersion() }.code == 26)
    }
}
