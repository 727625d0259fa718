import Foundation
internal import CSQLite
// The journal's API throws SQLiteError and takes SQLiteDatabase.Durability: its clients get the
// SQLite layer's types by importing Journal alone.
@_exported import SQLiteStore

/// The durable record of uploads the write-back mount still owes the server (issue 4).
///
/// A file closed after writing is recorded here, committed and fsynced, before `close` returns;
/// the uploader works from these rows and deletes one only when the server holds exactly the
/// version it describes. So a crash or `kill -9` of the daemon loses nothing: at the next start
/// `recoverInterrupted` puts interrupted attempts back to pending and every row is uploaded.
/// A small file's bytes can be kept with its row (table `contents`): then the commit that
/// records it is the only fsync its close costs, and the staging file is rebuilt from the
/// journal after a crash. They sit in a table of their own so that the many small updates of
/// a row (state, mtime, name) never rewrite them.
///
/// Durability per change: new content (`upsert`) and forgetting an upload (`remove`,
/// `removeTree`) are fsynced before they return. A new mtime or name (`setMtime`, `rename`)
/// and the uploader's bookkeeping (`setState`, `setChunkUploadID`, `complete`) are only
/// crash-safe: they survive a crash of the daemon, and become durable with the next fsynced
/// commit. Power loss right after one of them brings back the row as it was, which costs an
/// upload under the name or mtime before (as a local file system may lose a rename that was
/// not fsynced), or an upload the server already has (settled by its precondition); never
/// the content.
///
/// Each change that needs a new upload (new content through `upsert`, a new mtime, a new name)
/// raises the row's `generation`, puts it back to `pending` and clears its attempts. An upload
/// that was running meanwhile then finishes for an older generation, and `complete` refuses it:
/// the row stays for the next attempt instead of the change being lost.
///
/// Paths are relative to the mount root and stored NFC with no leading or trailing slash.
/// Every method normalises what it is given: SQLite compares bytes, and one name in two
/// Unicode spellings must not become two uploads (the server normalises to NFC as well).
///
/// Each method is one committed transaction. One connection serves all threads (see
/// `SQLiteDatabase`); readers in other processes open the file with `init(readOnlyPath:)`.
public final class UploadJournal: Sendable {
    /// The `user_version` this code writes and reads.
    public static let schemaVersion = 2

    private let database: SQLiteDatabase

    /// Totals for `ncfs status`.
    public struct Summary: Sendable, Hashable {
        public var count: Int
        public var bytes: Int64
        /// The oldest `createdAt`; nil when nothing is pending.
        public var oldestCreatedAt: Date?
        /// How many of `count` are in state `failed`.
        public var failed: Int

        public init(count: Int, bytes: Int64, oldestCreatedAt: Date?, failed: Int) {
            self.count = count
            self.bytes = bytes
            self.oldestCreatedAt = oldestCreatedAt
            self.failed = failed
        }
    }

    /// What `rename` did.
    public struct RenameOutcome: Sendable, Hashable {
        /// The rows moved to the new name (the renamed file's own, or those under a renamed
        /// folder): each one's new generation, by row id. The write-back takes them from here
        /// rather than reading the rows again.
        public var generations: [Int64: Int64]
        /// The pending upload that was at the destination and was replaced (POSIX rename over
        /// an existing file), so that its staging file can be deleted.
        public var replaced: PendingUpload?

        /// How many rows moved.
        public var renamed: Int { generations.count }

        public init(generations: [Int64: Int64], replaced: PendingUpload?) {
            self.generations = generations
            self.replaced = replaced
        }
    }

    /// Opens the journal at `path` for the daemon, creating it or migrating it to
    /// `schemaVersion`.
    public init(path: String) throws(SQLiteError) {
        database = try SQLiteDatabase(path: path)
        try database.transaction { db throws(SQLiteError) in
            switch try db.userVersion() {
            case 0:
                try Self.createSchema(db)
            case 1:
                // Version 2 added `contents`; a version-1 row has all its bytes in its staging file.
                try Self.createContents(db)
                try db.setUserVersion(Self.schemaVersion)
            case Self.schemaVersion:
                break
            case let version:
                throw Self.unknownSchema(version)
            }
        }
    }

    /// Opens an existing journal read-only, for `ncfs status` while the daemon runs.
    public init(readOnlyPath path: String) throws(SQLiteError) {
        database = try SQLiteDatabase(readOnlyPath: path)
        let version = try database.userVersion()
        guard version == Self.schemaVersion else { throw Self.unknownSchema(version) }
    }

    private static func createSchema(_ db: borrowing SQLiteConnection) throws(SQLiteError) {
        // STRICT: a value of the wrong type is an error on write rather than a surprise on read.
        // AUTOINCREMENT: ids are never reused (see `PendingUpload.id`).
        // The UNIQUE index on remote_path also serves the prefix ranges of rename and removeTree.
        try db.execute("""
            CREATE TABLE uploads (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                remote_path TEXT NOT NULL UNIQUE,
                staging_file TEXT NOT NULL,
                size INTEGER NOT NULL,
                mtime INTEGER NOT NULL,
                base_etag TEXT,
                state TEXT NOT NULL CHECK (state IN ('pending', 'uploading', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                chunk_upload_id TEXT,
                generation INTEGER NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            ) STRICT
            """)
        try createContents(db)
        try db.setUserVersion(schemaVersion)
    }

    private static func createContents(_ db: borrowing SQLiteConnection) throws(SQLiteError) {
        try db.execute("""
            CREATE TABLE contents (
                upload_id INTEGER PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
                bytes BLOB NOT NULL
            ) STRICT
            """)
    }

    private static func unknownSchema(_ version: Int) -> SQLiteError {
        SQLiteError(code: SQLITE_ERROR, message: "not an upload journal of schema \(schemaVersion) (user_version \(version))",
                    sql: "PRAGMA user_version")
    }

    // MARK: Recording changes

    /// Records that the file at `remotePath` has new content to upload, held in `stagingFile`;
    /// durable when this returns (only crash-safe with `durability: .crashSafe`). A path seen for the first time gets generation 1; a path
    /// already pending gets the new staging file, size and mtime, the next generation, state
    /// `pending` with no attempts, error or chunked upload, and keeps its `createdAt` and (when
    /// `baseETag` is nil) its base ETag: the server still holds the version the first change
    /// was based on. The caller deletes a staging file it no longer uses.
    ///
    /// `content`, when given, is the file's whole content (`size` bytes), kept in the journal
    /// so that the caller need not fsync the staging file: `content(id:)` gives it back after
    /// a crash. Without it the caller has fsynced the staging file, and a content an earlier
    /// upsert kept is dropped.
    ///
    /// `durability` `.crashSafe` is for a row that carries its `content`: row and bytes are one
    /// commit, so whatever a power cut leaves is either both or neither.
    @discardableResult
    public func upsert(remotePath: String, stagingFile: String, size: Int64, mtime: Int64,
                       baseETag: String? = nil, content: [UInt8]? = nil,
                       durability: SQLiteDatabase.Durability = .durable) throws(SQLiteError) -> PendingUpload {
        precondition(content.map { Int64($0.count) == size } ?? true, "the content kept must be the whole file")
        let now = Self.now()
        return try database.transaction(durability: durability) { db throws(SQLiteError) in
            let rows = try db.query("""
            INSERT INTO uploads (remote_path, staging_file, size, mtime, base_etag, state, attempts, generation, created_at, updated_at)
            VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, 1, ?6, ?6)
            ON CONFLICT (remote_path) DO UPDATE SET
                staging_file = excluded.staging_file, size = excluded.size, mtime = excluded.mtime,
                base_etag = coalesce(excluded.base_etag, base_etag),
                state = 'pending', attempts = 0, last_error = NULL, chunk_upload_id = NULL,
                generation = generation + 1, updated_at = excluded.updated_at
            RETURNING *
            """, [.text(Self.key(remotePath)), .text(stagingFile), .integer(size), .integer(mtime), SQLiteValue(baseETag), .real(now)])
            guard let row = rows.first else {
                throw SQLiteError(code: SQLITE_INTERNAL, message: "upsert returned no row", sql: nil)
            }
            let upload = try PendingUpload(row: row)
            if let content {
                try db.execute("""
                    INSERT INTO contents (upload_id, bytes) VALUES (?1, ?2)
                    ON CONFLICT (upload_id) DO UPDATE SET bytes = excluded.bytes
                    """, [.integer(upload.id), .blob(content)])
            } else {
                try db.execute("DELETE FROM contents WHERE upload_id = ?", [.integer(upload.id)])
            }
            return upload
        }
    }

    /// Sets the mtime of a pending upload (`utimens`, as rsync does after writing); crash-safe.
    /// A new generation, since an upload already running sends the old mtime. Returns the row
    /// as changed, or nil when the path has no pending upload: the caller then records the
    /// file with `upsert`, or changes the mtime on the server.
    @discardableResult
    public func setMtime(remotePath: String, mtime: Int64) throws(SQLiteError) -> PendingUpload? {
        try database.query("""
            UPDATE uploads SET mtime = ?1, generation = generation + 1, state = 'pending', attempts = 0, updated_at = ?2
            WHERE remote_path = ?3
            RETURNING *
            """, [.integer(mtime), .real(Self.now()), .text(Self.key(remotePath))], durability: .crashSafe)
            .first.map { row throws(SQLiteError) in try PendingUpload(row: row) }
    }

    /// Renames the pending upload at `from` and every pending upload below `from/` (a folder
    /// rename), so nothing is uploaded under the old names. A pending upload at `to` itself is
    /// removed first and returned: a rename over an existing file replaces it. Renamed rows get
    /// a new generation and drop their chunked upload (its destination is fixed when it starts);
    /// they keep their base ETags (see `rename(from:to:baseETag:)`).
    /// A renamed row that would collide with a pending upload below `to/` fails the whole
    /// rename with `SQLITE_CONSTRAINT_UNIQUE` (POSIX refuses a rename onto a non-empty folder
    /// before it gets here); nothing is ever dropped silently.
    public func rename(from: String, to: String) throws(SQLiteError) -> RenameOutcome {
        try rename(from: from, to: to, base: nil)
    }

    /// `rename(from:to:)`, also giving the file renamed from `from` the base ETag `baseETag`
    /// (nil: new on the server) in the same transaction. For a rename onto a name whose server
    /// version is now what the upload replaces: a base kept from the old name would make the
    /// upload fail its precondition after a restart.
    public func rename(from: String, to: String, baseETag: String?) throws(SQLiteError) -> RenameOutcome {
        try rename(from: from, to: to, base: .some(baseETag))
    }

    /// `base`: nil keeps every row's base ETag, `.some` sets the one of the row at `from`.
    private func rename(from: String, to: String, base: String??) throws(SQLiteError) -> RenameOutcome {
        let from = Self.key(from), to = Self.key(to)
        precondition(!from.isEmpty && !to.isEmpty, "the mount root is never renamed")
        if from == to { return RenameOutcome(generations: [:], replaced: nil) }
        let now = Self.now()
        return try database.transaction(durability: .crashSafe) { db throws(SQLiteError) in
            let replaced = try db.query("DELETE FROM uploads WHERE remote_path = ? RETURNING *", [.text(to)])
                .first.map { row throws(SQLiteError) in try PendingUpload(row: row) }
            // length() and substr() both count characters, so the new path is `to` followed by
            // whatever came after `from` ("" or "/…").
            let renamed = try db.query("""
                UPDATE uploads SET remote_path = ?1 || substr(remote_path, length(?2) + 1),
                    base_etag = CASE WHEN ?6 AND remote_path = ?2 THEN ?7 ELSE base_etag END,
                    generation = generation + 1, state = 'pending', attempts = 0, chunk_upload_id = NULL, updated_at = ?5
                WHERE \(Self.treeCondition(parameter: 2))
                RETURNING id, generation
                """, [.text(to), .text(from)] + Self.treeBounds(from) + [.real(now), .integer(base == nil ? 0 : 1), SQLiteValue(base ?? nil)])
            var generations: [Int64: Int64] = [:]
            for row in renamed { generations[try row.int64("id")] = try row.int64("generation") }
            return RenameOutcome(generations: generations, replaced: replaced)
        }
    }

    /// Forgets the pending upload at `remotePath` (the file was unlinked) and returns it, so
    /// that its staging file can be deleted.
    @discardableResult
    public func remove(remotePath: String) throws(SQLiteError) -> PendingUpload? {
        try database.query("DELETE FROM uploads WHERE remote_path = ? RETURNING *", [.text(Self.key(remotePath))])
            .first.map { row throws(SQLiteError) in try PendingUpload(row: row) }
    }

    /// Forgets the pending uploads at `prefix` and below `prefix/` (a folder removed) and
    /// returns them.
    @discardableResult
    public func removeTree(prefix: String) throws(SQLiteError) -> [PendingUpload] {
        let prefix = Self.key(prefix)
        precondition(!prefix.isEmpty, "the mount root is never removed")
        return try Self.uploads(database.query("DELETE FROM uploads WHERE \(Self.treeCondition(parameter: 1)) RETURNING *",
                                               [.text(prefix)] + Self.treeBounds(prefix)))
    }

    // MARK: The uploader's side

    /// Moves an upload to `state`. Moving to `uploading` counts an attempt. `error` becomes
    /// `lastError`; nil keeps the previous one (so status still shows why the last attempt
    /// failed while the next one runs). False when the row is gone (removed meanwhile).
    @discardableResult
    public func setState(id: Int64, state: PendingUpload.State, error: String? = nil) throws(SQLiteError) -> Bool {
        try database.execute("""
            UPDATE uploads SET state = ?1, attempts = attempts + (?1 = 'uploading'), last_error = coalesce(?2, last_error),
                updated_at = ?3
            WHERE id = ?4
            """, [.text(state.rawValue), SQLiteValue(error), .real(Self.now()), .integer(id)], durability: .crashSafe) > 0
    }

    /// Sets the base ETag of upload `id` (crash-safe): the version on the server that the next
    /// attempt may replace, when an attempt of this upload itself left one there. False when
    /// the row is gone.
    @discardableResult
    public func setBaseETag(id: Int64, etag: String) throws(SQLiteError) -> Bool {
        try database.execute("UPDATE uploads SET base_etag = ?1, updated_at = ?2 WHERE id = ?3",
                             [.text(etag), .real(Self.now()), .integer(id)], durability: .crashSafe) > 0
    }

    /// Records (or, with nil, forgets) the chunked upload that carries this row's bytes, so a
    /// restart resumes it rather than sending every chunk again. False when the row is gone.
    @discardableResult
    public func setChunkUploadID(id: Int64, uploadID: String?) throws(SQLiteError) -> Bool {
        try database.execute("UPDATE uploads SET chunk_upload_id = ?1, updated_at = ?2 WHERE id = ?3",
                             [SQLiteValue(uploadID), .real(Self.now()), .integer(id)], durability: .crashSafe) > 0
    }

    /// The server now holds generation `generation` of upload `id`, with ETag `serverETag`.
    /// Deletes the row and returns true if that is still the row's generation. Otherwise the
    /// file changed during the upload: the row stays pending, its base ETag becomes
    /// `serverETag` (the version on the server is now ours, so the next upload's `If-Match`
    /// must name it; nil keeps the old one), and this returns false.
    @discardableResult
    public func complete(id: Int64, generation: Int64, serverETag: String?) throws(SQLiteError) -> Bool {
        let now = Self.now()
        return try database.transaction(durability: .crashSafe) { db throws(SQLiteError) in
            if try db.execute("DELETE FROM uploads WHERE id = ? AND generation = ?", [.integer(id), .integer(generation)]) > 0 {
                return true
            }
            try db.execute("UPDATE uploads SET base_etag = coalesce(?1, base_etag), updated_at = ?2 WHERE id = ?3",
                           [SQLiteValue(serverETag), .real(now), .integer(id)])
            return false
        }
    }

    /// Puts uploads left in state `uploading` by a daemon that died back to `pending`; the
    /// daemon calls it once at start, before its uploader runs. Returns how many there were.
    @discardableResult
    public func recoverInterrupted() throws(SQLiteError) -> Int {
        try database.execute("UPDATE uploads SET state = 'pending', updated_at = ? WHERE state = 'uploading'", [.real(Self.now())])
    }

    // MARK: Reading

    /// The pending upload at `remotePath`, if any.
    public func upload(at remotePath: String) throws(SQLiteError) -> PendingUpload? {
        try database.query("SELECT * FROM uploads WHERE remote_path = ?", [.text(Self.key(remotePath))])
            .first.map { row throws(SQLiteError) in try PendingUpload(row: row) }
    }

    /// Every pending upload, oldest first.
    public func all() throws(SQLiteError) -> [PendingUpload] {
        try Self.uploads(database.query("SELECT * FROM uploads ORDER BY created_at, id"))
    }

    /// The content `upsert` kept for upload `id`: nil when it keeps none (its bytes are in its
    /// fsynced staging file) or the row is gone.
    public func content(id: Int64) throws(SQLiteError) -> [UInt8]? {
        guard case .blob(let bytes)? = try database.query("SELECT bytes FROM contents WHERE upload_id = ?", [.integer(id)]).first?[0]
        else { return nil }
        return bytes
    }

    public func summary() throws(SQLiteError) -> Summary {
        let rows = try database.query("""
            SELECT count(*) AS count, coalesce(sum(size), 0) AS bytes, min(created_at) AS oldest,
                count(*) FILTER (WHERE state = 'failed') AS failed
            FROM uploads
            """)
        guard let row = rows.first else { return Summary(count: 0, bytes: 0, oldestCreatedAt: nil, failed: 0) }
        return Summary(count: Int(try row.int64("count")), bytes: try row.int64("bytes"),
                       oldestCreatedAt: row["oldest"].double.map { Date(timeIntervalSince1970: $0) },
                       failed: Int(try row.int64("failed")))
    }

    // MARK: Helpers

    /// The stored form of a path: NFC, no leading or trailing slash.
    static func key(_ path: String) -> String {
        path.precomposedStringWithCanonicalMapping.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    }

    /// Matches the path bound at `?parameter` and every path below it, using the two bounds
    /// of `treeBounds` at the next two parameters. A range on the index rather than LIKE, whose
    /// `%` and `_` would be wildcards inside file names: "a/" ≤ p < "a0" holds exactly for the
    /// paths starting with "a/", since "0" is the byte after "/" and comparison is bytewise.
    private static func treeCondition(parameter p: Int) -> String {
        "(remote_path = ?\(p) OR (remote_path >= ?\(p + 1) AND remote_path < ?\(p + 2)))"
    }

    private static func treeBounds(_ prefix: String) -> [SQLiteValue] {
        [.text(prefix + "/"), .text(prefix + "0")]
    }

    private static func uploads(_ rows: [SQLiteRow]) throws(SQLiteError) -> [PendingUpload] {
        var uploads: [PendingUpload] = []
        uploads.reserveCapacity(rows.count)
        for row in rows { uploads.append(try PendingUpload(row: row)) }
        return uploads
    }

    private static func now() -> Double { Date().timeIntervalSince1970 }
}
