import Foundation
import Journal
import RemoteCache

/// What this mount knows of its files' POSIX attributes beyond what the server stores: the
/// mode and owner set here (until the server has them), and the times Nextcloud cannot keep
/// (nanoseconds of mtime, atime, ctime). Keyed by path, in memory, and in `attributes.sqlite`
/// in the state folder so they survive a remount.
///
/// A record exists only for a file something was done to: a file whose mode, owner and times
/// are the defaults has none, so a bulk copy of ordinary files costs no row and no request.
///
/// Mode and owner (`posix`) are the local truth while `pending` (the background sync has not
/// stored them on the server yet); once stored, the first listing that shows the same value
/// hands authority back to the server (`confirm`), so another mount's later change is seen.
final class AttributeStore: @unchecked Sendable {
    // @unchecked: `records` is guarded by `lock`, a leaf lock; the database has its own.

    struct Record: Equatable {
        var posix: PosixAttributes?
        /// Mode and owner not stored on the server yet.
        var pending = false
        /// Nanoseconds since 1970, each nil when not set here. `mtime` counts only while its
        /// whole seconds match the server's (otherwise the file changed elsewhere).
        var mtime: Int64?
        var atime: Int64?
        var ctime: Int64?

        var isEmpty: Bool { posix == nil && mtime == nil && atime == nil && ctime == nil }
    }

    private let lock = NSLock()
    private var records: [String: Record] = [:]
    private let database: SQLiteDatabase?

    /// In memory only (a read-only mount, or tests).
    init() { database = nil }

    /// Opens (or creates) `attributes.sqlite` in `directory` and loads every record.
    init(directory: URL) throws {
        let database = try SQLiteDatabase(path: directory.appendingPathComponent("attributes.sqlite").path)
        try database.execute("""
            CREATE TABLE IF NOT EXISTS attributes (path TEXT PRIMARY KEY, mode INTEGER, uid INTEGER, gid INTEGER,
                pending INTEGER NOT NULL DEFAULT 0, mtime_ns INTEGER, atime_ns INTEGER, ctime_ns INTEGER)
            """)
        for row in try database.query("SELECT path, mode, uid, gid, pending, mtime_ns, atime_ns, ctime_ns FROM attributes") {
            guard let path = row[0].string else { continue }
            var record = Record()
            if let mode = row[1].int64, let uid = row[2].int64, let gid = row[3].int64 {
                record.posix = PosixAttributes(mode: UInt32(truncatingIfNeeded: mode), uid: UInt32(truncatingIfNeeded: uid),
                                               gid: UInt32(truncatingIfNeeded: gid))
            }
            record.pending = row[4].int64 == 1
            record.mtime = row[5].int64
            record.atime = row[6].int64
            record.ctime = row[7].int64
            records[path] = record
        }
        self.database = database
    }

    var isEmpty: Bool { lock.lock(); defer { lock.unlock() }; return records.isEmpty }

    func record(_ path: String) -> Record? {
        lock.lock(); defer { lock.unlock() }
        return records[path]
    }

    /// Changes the record of `path` (created if missing, removed when left empty) and writes
    /// it through to the database before returning.
    func update(_ path: String, _ change: (inout Record) -> Void) throws(FSError) {
        lock.lock()
        var record = records[path] ?? Record()
        change(&record)
        records[path] = record.isEmpty ? nil : record
        lock.unlock()
        try persist(path, record)
    }

    /// The server now shows `posix` for `path`: a stored (not pending) record that says the
    /// same gives up its copy, and the server's value counts from now on.
    func confirm(_ path: String, _ posix: PosixAttributes) {
        lock.lock()
        guard var record = records[path], !record.pending, record.posix == posix else { lock.unlock(); return }
        record.posix = nil
        records[path] = record.isEmpty ? nil : record
        lock.unlock()
        try? persist(path, record)
    }

    /// The sync stored `posix` on the server: no longer pending, unless it changed meanwhile.
    func stored(_ path: String, _ posix: PosixAttributes) {
        lock.lock()
        guard var record = records[path], record.pending, record.posix == posix else { lock.unlock(); return }
        record.pending = false
        records[path] = record
        lock.unlock()
        try? persist(path, record)
    }

    /// Mode and owner waiting for the server, at most `limit` of them.
    func pending(limit: Int) -> [(path: String, posix: PosixAttributes)] {
        lock.lock(); defer { lock.unlock() }
        var found: [(String, PosixAttributes)] = []
        for (path, record) in records where record.pending {
            guard let posix = record.posix else { continue }
            found.append((path, posix))
            if found.count == limit { break }
        }
        return found
    }

    /// `path` (and, for a folder, everything below it) is gone.
    func remove(_ path: String, tree: Bool) {
        lock.lock()
        var removed = records.removeValue(forKey: path) != nil
        if tree {
            let prefix = path + "/"
            for key in records.keys where key.hasPrefix(prefix) { records[key] = nil; removed = true }
        }
        lock.unlock()
        guard removed, let database else { return }
        do {
            try database.execute("DELETE FROM attributes WHERE path = ?1" + (tree ? " OR substr(path, 1, length(?1) + 1) = ?1 || '/'" : ""),
                                 [.text(path)], durability: .crashSafe)
        } catch {
            // The rows stay; a later record of the same name replaces them.
        }
    }

    /// A rename: the records at and (for a folder) below `from` move to `to`, replacing what
    /// was there.
    func rename(from: String, to: String, tree: Bool) throws(FSError) {
        remove(to, tree: tree)
        lock.lock()
        var moved = false
        if let record = records.removeValue(forKey: from) { records[to] = record; moved = true }
        if tree {
            let prefix = from + "/"
            for key in Array(records.keys) where key.hasPrefix(prefix) {
                records[to + key.dropFirst(from.count)] = records.removeValue(forKey: key)
                moved = true
            }
        }
        lock.unlock()
        guard moved, let database else { return }
        do {
            try database.execute("""
                UPDATE attributes SET path = ?2 || substr(path, length(?1) + 1)
                WHERE path = ?1\(tree ? " OR substr(path, 1, length(?1) + 1) = ?1 || '/'" : "")
                """, [.text(from), .text(to)], durability: .crashSafe)
        } catch {
            throw .cacheFailure("recording the rename of /\(from) in attributes.sqlite: \(error)")
        }
    }

    /// One row written (or deleted when empty). `crashSafe`: a chmod is not worth an fsync;
    /// what a power cut loses is the last second of mode changes, never the file.
    private func persist(_ path: String, _ record: Record) throws(FSError) {
        guard let database else { return }
        do {
            if record.isEmpty {
                try database.execute("DELETE FROM attributes WHERE path = ?1", [.text(path)], durability: .crashSafe)
                return
            }
            try database.execute("""
                INSERT OR REPLACE INTO attributes (path, mode, uid, gid, pending, mtime_ns, atime_ns, ctime_ns)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """, [.text(path), SQLiteValue(record.posix.map { Int64($0.mode) }), SQLiteValue(record.posix.map { Int64($0.uid) }),
                      SQLiteValue(record.posix.map { Int64($0.gid) }), .integer(record.pending ? 1 : 0),
                      SQLiteValue(record.mtime), SQLiteValue(record.atime), SQLiteValue(record.ctime)], durability: .crashSafe)
        } catch {
            throw .cacheFailure("writing /\(path) to attributes.sqlite: \(error)")
        }
    }
}
