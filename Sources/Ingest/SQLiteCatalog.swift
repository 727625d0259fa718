import Foundation
import SQLiteStore

/// The embedded catalog: one SQLite file (`catalog.sqlite` in the mount's state folder), WAL
/// and synchronous=FULL like the upload journal, so `ncfs status` and `ncfs items` read it
/// while the daemon writes and a committed state survives a crash.
///
/// Two partial UNIQUE indexes carry the pipeline's guarantees:
/// - one item per staged file while it is in `incoming/` (a file is never taken twice);
/// - one item per original path on the server (two items never upload to the same name,
///   even from two workers racing for `name (2).jpg`).
public final class SQLiteCatalog: Catalog {
    public static let schemaVersion = 1

    private let database: SQLiteDatabase

    /// Opens (creating or checking) the catalog at `path` for reading and writing. Several
    /// processes may write (the daemon, `ncfs backfill`): SQLite serialises them.
    public init(path: String) throws {
        do {
            database = try SQLiteDatabase(path: path)
            try database.transaction { db throws(SQLiteError) in
                switch try db.userVersion() {
                case 0: try Self.createSchema(db)
                case Self.schemaVersion: break
                case let version:
                    throw SQLiteError(code: 1, message: "not an ingest catalog of schema \(Self.schemaVersion) (user_version \(version))", sql: nil)
                }
            }
        } catch {
            throw Self.wrap(error)
        }
    }

    /// Opens an existing catalog read-only (`ncfs status`, `ncfs items`).
    public init(readOnlyPath path: String) throws {
        do {
            database = try SQLiteDatabase(readOnlyPath: path)
            let version = try database.userVersion()
            guard version == Self.schemaVersion else {
                throw SQLiteError(code: 1, message: "not an ingest catalog of schema \(Self.schemaVersion) (user_version \(version))", sql: nil)
            }
        } catch {
            throw Self.wrap(error)
        }
    }

    public func integrityCheck() throws -> String {
        do { return try database.integrityCheck() } catch { throw Self.wrap(error) }
    }

    private static func createSchema(_ db: borrowing SQLiteConnection) throws(SQLiteError) {
        try db.execute("""
            CREATE TABLE items (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                staging_path TEXT,
                state TEXT NOT NULL CHECK (state IN ('pending','uploading','deriving','succeeded','failed','duplicate','quarantined')),
                source_type TEXT NOT NULL,
                storage_provider TEXT NOT NULL,
                bucket TEXT NOT NULL,
                day TEXT,
                original_path TEXT,
                original_url TEXT,
                share_url TEXT,
                derivatives TEXT NOT NULL,
                size INTEGER NOT NULL,
                sha256 TEXT,
                width INTEGER,
                height INTEGER,
                format TEXT,
                source_mtime INTEGER NOT NULL,
                capture_date TEXT,
                palette TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at REAL NOT NULL,
                persist_error TEXT,
                derivative_error TEXT,
                is_image INTEGER,
                duplicate_of INTEGER REFERENCES items(id),
                quarantine_reason TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                finished_at REAL
            ) STRICT
            """)
        try db.execute("""
            CREATE UNIQUE INDEX items_in_incoming ON items(staging_path)
            WHERE state IN ('pending','uploading','deriving','failed')
            """)
        try db.execute("CREATE UNIQUE INDEX items_original ON items(original_path) WHERE original_path IS NOT NULL")
        try db.execute("CREATE INDEX items_sha256 ON items(sha256) WHERE sha256 IS NOT NULL")
        try db.execute("CREATE INDEX items_state ON items(state, next_attempt_at)")
        try db.setUserVersion(schemaVersion)
    }

    // MARK: Catalog

    public func add(name: String, stagingPath: String, bucket: String, size: Int64, sourceMtime: Int64, now: Date) throws -> IngestItem {
        let draft = IngestItem(id: 0, name: name, stagingPath: stagingPath, state: .pending, bucket: bucket, size: size,
                               sourceMtime: sourceMtime, now: now)
        var columns = Self.columns(of: draft)
        columns.removeFirst()  // id: assigned by SQLite
        let names = columns.map(\.0).joined(separator: ", ")
        let marks = (1...columns.count).map { "?\($0)" }.joined(separator: ", ")
        let rows = try run { () throws(SQLiteError) in
            try database.query("INSERT INTO items (\(names)) VALUES (\(marks)) RETURNING *", columns.map(\.1))
        }
        guard let row = rows.first else { throw CatalogError.storage("insert returned no row") }
        return try Self.item(row)
    }

    public func item(_ id: Int64) throws -> IngestItem? {
        try select("WHERE id = ?1", [.integer(id)]).first
    }

    public func inIncoming(stagingPath: String) throws -> IngestItem? {
        try select("WHERE staging_path = ?1 AND state IN ('pending','uploading','deriving','failed')", [.text(stagingPath)]).first
    }

    public func allInIncoming() throws -> [IngestItem] {
        try select("WHERE state IN ('pending','uploading','deriving','failed') ORDER BY id", [])
    }

    public func due(now: Date, limit: Int, excluding: Set<Int64>) throws -> [IngestItem] {
        // Few items are in flight (one per worker): filtering them here is cheaper than a
        // NOT IN list with a variable number of bindings.
        try select("WHERE state IN ('pending','uploading','deriving') AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
                   [.real(now.timeIntervalSince1970), .integer(Int64(limit + excluding.count))])
            .filter { !excluding.contains($0.id) }
            .prefix(limit).map { $0 }
    }

    public func nextDue() throws -> Date? {
        let rows = try run { () throws(SQLiteError) in
            try database.query("SELECT min(next_attempt_at) FROM items WHERE state IN ('pending','uploading','deriving')")
        }
        return rows.first?[0].double.map { Date(timeIntervalSince1970: $0) }
    }

    public func update(_ item: IngestItem) throws {
        var changed = item
        // The wall clock, not the service's: `updated_at` is the catalog's own stamp of its
        // last write to the row, made for every writer (the service, and the repair and
        // backfill commands, which have no other clock), a record for a person reading the
        // catalog and `status`' fallback for a finished item without `finished_at`. Nothing
        // the service decides reads it; the times it does (next attempt, finished, the day)
        // come from its clock.
        changed.updatedAt = Date()
        let columns = Self.columns(of: changed)
        let assignments = columns.dropFirst().enumerated().map { "\($0.element.0) = ?\($0.offset + 2)" }.joined(separator: ", ")
        let count = try run { () throws(SQLiteError) in
            try database.execute("UPDATE items SET \(assignments) WHERE id = ?1", columns.map(\.1))
        }
        guard count == 1 else { throw CatalogError.storage("item \(item.id) does not exist") }
    }

    public func remove(_ id: Int64) throws {
        try run { () throws(SQLiteError) in
            // A later duplicate pointing at it keeps its own record; the reference is dropped.
            try database.transaction { db throws(SQLiteError) in
                try db.execute("UPDATE items SET duplicate_of = NULL WHERE duplicate_of = ?1", [.integer(id)])
                try db.execute("DELETE FROM items WHERE id = ?1", [.integer(id)])
            }
        }
    }

    public func holder(sha256: String, excluding: Int64) throws -> IngestItem? {
        try select("""
            WHERE sha256 = ?1 AND id != ?2 AND original_path IS NOT NULL
              AND state IN ('uploading','deriving','succeeded')
            ORDER BY id LIMIT 1
            """, [.text(sha256), .integer(excluding)]).first
    }

    public func holders(sha256: String, bucket: String, excluding: Int64) throws -> [IngestItem] {
        try select("""
            WHERE sha256 = ?1 AND id != ?2 AND bucket = ?3 AND original_path IS NOT NULL
              AND state IN ('uploading','deriving','succeeded')
            ORDER BY id
            """, [.text(sha256), .integer(excluding), .text(bucket)])
    }

    public func reservedNames(in folder: String, excluding: Int64) throws -> [String] {
        // A range on the index: every path that starts with "folder/" ("0" follows "/").
        let rows = try run { () throws(SQLiteError) in
            try database.query("SELECT original_path FROM items WHERE original_path >= ?1 AND original_path < ?2 AND id != ?3",
                               [.text(folder + "/"), .text(folder + "0"), .integer(excluding)])
        }
        return rows.compactMap { $0[0].string }.map { String($0.dropFirst(folder.count + 1)) }.filter { !$0.contains("/") }
    }

    public func items(states: Set<IngestItem.State>, limit: Int?) throws -> [IngestItem] {
        var clause = ""
        if !states.isEmpty {
            clause = "WHERE state IN (" + states.map { "'\($0.rawValue)'" }.sorted().joined(separator: ",") + ") "
        }
        clause += "ORDER BY id DESC"
        if let limit { clause += " LIMIT \(max(0, limit))" }
        return try select(clause, [])
    }

    public func finishedWithStagedFile() throws -> [IngestItem] {
        try select("WHERE staging_path IS NOT NULL AND state IN ('succeeded','duplicate','quarantined')", [])
    }

    public func counts(now: Date, rateWindow: Double) throws -> IngestCounts {
        let since = now.timeIntervalSince1970 - rateWindow
        return try run { () throws(SQLiteError) -> IngestCounts in
            var counts = IngestCounts()
            for row in try database.query("SELECT state, count(*), coalesce(sum(size), 0) FROM items GROUP BY state") {
                guard let name = row[0].string, let state = IngestItem.State(rawValue: name) else { continue }
                counts.count[state] = Int(row[1].int64 ?? 0)
                counts.bytes[state] = row[2].int64 ?? 0
            }
            let recent = try database.query("""
                SELECT coalesce(sum(size), 0), min(finished_at) FROM items
                WHERE finished_at >= ?1 AND state IN ('succeeded','duplicate')
                """, [.real(since)])
            if let row = recent.first {
                counts.recentBytes = row[0].int64 ?? 0
                if let first = row[1].double { counts.recentSeconds = max(1, now.timeIntervalSince1970 - first) }
            }
            return counts
        }
    }

    public func timeline() throws -> [IngestTimes] {
        let rows = try run { () throws(SQLiteError) in
            try database.query("SELECT id, state, size, attempts, created_at, next_attempt_at, updated_at, finished_at FROM items")
        }
        return rows.compactMap { row in
            guard let id = row[0].int64, let state = row[1].string.flatMap(IngestItem.State.init(rawValue:)),
                  let created = row[4].double else { return nil }
            func date(_ index: Int) -> Date? { row[index].double.map { Date(timeIntervalSince1970: $0) } }
            return IngestTimes(id: id, state: state, size: row[2].int64 ?? 0, attempts: Int(row[3].int64 ?? 0),
                               createdAt: Date(timeIntervalSince1970: created), nextAttemptAt: date(5) ?? Date(timeIntervalSince1970: created),
                               updatedAt: date(6) ?? Date(timeIntervalSince1970: created), finishedAt: date(7))
        }
    }

    public func reschedule(limit: Int, now: Date) throws -> [IngestItem] {
        try run { () throws(SQLiteError) -> [IngestItem] in
            try database.transaction { db throws(SQLiteError) -> [IngestItem] in
                let rows = try db.query("""
                    UPDATE items SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1, persist_error = NULL
                    WHERE id IN (SELECT id FROM items WHERE state = 'failed' ORDER BY id LIMIT ?2)
                    RETURNING *
                    """, [.real(now.timeIntervalSince1970), .integer(Int64(limit))])
                var items: [IngestItem] = []
                for row in rows {
                    do { items.append(try Self.item(row)) } catch { throw SQLiteError(code: 1, message: "\(error)", sql: nil) }
                }
                return items
            }
        }
    }

    public func reschedule(ids: [Int64], now: Date) throws -> [IngestItem] {
        guard !ids.isEmpty else { return [] }
        return try run { () throws(SQLiteError) -> [IngestItem] in
            try database.transaction { db throws(SQLiteError) -> [IngestItem] in
                var items: [IngestItem] = []
                for id in ids {
                    let rows = try db.query("""
                        UPDATE items SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1, persist_error = NULL
                        WHERE id = ?2 AND state = 'failed'
                        RETURNING *
                        """, [.real(now.timeIntervalSince1970), .integer(id)])
                    for row in rows {
                        do { items.append(try Self.item(row)) } catch { throw SQLiteError(code: 1, message: "\(error)", sql: nil) }
                    }
                }
                return items
            }
        }
    }

    public static let dismissableStates: Set<IngestItem.State> = [.failed, .duplicate, .quarantined]

    public func dismiss(ids: [Int64]) throws -> [IngestItem] {
        guard !ids.isEmpty else { return [] }
        let states = Self.dismissableStates.map { "'\($0.rawValue)'" }.sorted().joined(separator: ",")
        return try run { () throws(SQLiteError) -> [IngestItem] in
            try database.transaction { db throws(SQLiteError) -> [IngestItem] in
                var items: [IngestItem] = []
                for id in ids {
                    // References first: `duplicate_of` is a foreign key.
                    guard try !db.query("SELECT 1 FROM items WHERE id = ?1 AND state IN (\(states))", [.integer(id)]).isEmpty else { continue }
                    try db.execute("UPDATE items SET duplicate_of = NULL WHERE duplicate_of = ?1", [.integer(id)])
                    let rows = try db.query("DELETE FROM items WHERE id = ?1 RETURNING *", [.integer(id)])
                    guard let row = rows.first else { continue }
                    do { items.append(try Self.item(row)) } catch { throw SQLiteError(code: 1, message: "\(error)", sql: nil) }
                }
                return items
            }
        }
    }

    // MARK: Rows

    private func select(_ clause: String, _ bindings: [SQLiteValue]) throws -> [IngestItem] {
        let rows = try run { () throws(SQLiteError) in try database.query("SELECT * FROM items " + clause, bindings) }
        return try rows.map(Self.item)
    }

    /// Runs a database call and turns its failure into a CatalogError.
    private func run<T>(_ body: () throws(SQLiteError) -> T) throws -> T {
        do { return try body() } catch { throw Self.wrap(error) }
    }

    private static func wrap(_ error: any Error) -> CatalogError {
        if let error = error as? SQLiteError, error.primaryCode == 19 {  // SQLITE_CONSTRAINT
            return .conflict(error.message)
        }
        if let error = error as? CatalogError { return error }
        return .storage("\(error)")
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Column name and value for every field, `id` first.
    private static func columns(of item: IngestItem) -> [(String, SQLiteValue)] {
        let derivatives = (try? encoder.encode(item.derivatives)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        let palette = (try? encoder.encode(item.palette)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        return [
            ("id", .integer(item.id)),
            ("name", .text(item.name)),
            ("staging_path", SQLiteValue(item.stagingPath)),
            ("state", .text(item.state.rawValue)),
            ("source_type", .text(item.sourceType)),
            ("storage_provider", .text(item.storageProvider)),
            ("bucket", .text(item.bucket)),
            ("day", SQLiteValue(item.day)),
            ("original_path", SQLiteValue(item.originalPath)),
            ("original_url", SQLiteValue(item.originalURL)),
            ("share_url", SQLiteValue(item.shareURL)),
            ("derivatives", .text(derivatives)),
            ("size", .integer(item.size)),
            ("sha256", SQLiteValue(item.sha256)),
            ("width", SQLiteValue(item.width.map(Int64.init))),
            ("height", SQLiteValue(item.height.map(Int64.init))),
            ("format", SQLiteValue(item.format)),
            ("source_mtime", .integer(item.sourceMtime)),
            ("capture_date", SQLiteValue(item.captureDate)),
            ("palette", .text(palette)),
            ("attempts", .integer(Int64(item.attempts))),
            ("next_attempt_at", .real(item.nextAttemptAt.timeIntervalSince1970)),
            ("persist_error", SQLiteValue(item.persistError)),
            ("derivative_error", SQLiteValue(item.derivativeError)),
            ("is_image", SQLiteValue(item.isImage.map { Int64($0 ? 1 : 0) })),
            ("duplicate_of", SQLiteValue(item.duplicateOf)),
            ("quarantine_reason", SQLiteValue(item.quarantineReason)),
            ("created_at", .real(item.createdAt.timeIntervalSince1970)),
            ("updated_at", .real(item.updatedAt.timeIntervalSince1970)),
            ("finished_at", SQLiteValue(item.finishedAt?.timeIntervalSince1970)),
        ]
    }

    private static func item(_ row: SQLiteRow) throws -> IngestItem {
        func text(_ name: String) -> String? { row[name].string }
        func integer(_ name: String) -> Int64? { row[name].int64 }
        func date(_ name: String) -> Date? { row[name].double.map { Date(timeIntervalSince1970: $0) } }
        guard let id = integer("id"), let name = text("name"), let stateName = text("state"),
              let state = IngestItem.State(rawValue: stateName), let bucket = text("bucket"),
              let size = integer("size"), let mtime = integer("source_mtime"), let created = date("created_at") else {
            throw CatalogError.storage("a catalog row is missing required fields")
        }
        var item = IngestItem(id: id, name: name, stagingPath: text("staging_path"), state: state, bucket: bucket,
                              size: size, sourceMtime: mtime, now: created)
        item.sourceType = text("source_type") ?? "upload"
        item.storageProvider = text("storage_provider") ?? "nextcloud"
        item.day = text("day")
        item.originalPath = text("original_path")
        item.originalURL = text("original_url")
        item.shareURL = text("share_url")
        if let json = text("derivatives") {
            item.derivatives = (try? JSONDecoder().decode([StoredDerivative].self, from: Data(json.utf8))) ?? []
        }
        item.sha256 = text("sha256")
        item.width = integer("width").map(Int.init)
        item.height = integer("height").map(Int.init)
        item.format = text("format")
        item.captureDate = text("capture_date")
        if let json = text("palette") {
            item.palette = (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
        }
        item.attempts = Int(integer("attempts") ?? 0)
        item.nextAttemptAt = date("next_attempt_at") ?? created
        item.persistError = text("persist_error")
        item.derivativeError = text("derivative_error")
        item.isImage = integer("is_image").map { $0 != 0 }
        item.duplicateOf = integer("duplicate_of")
        item.quarantineReason = text("quarantine_reason")
        item.updatedAt = date("updated_at") ?? created
        item.finishedAt = date("finished_at")
        return item
    }
}
