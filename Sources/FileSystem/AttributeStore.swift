import Foundation
import Journal
import RemoteCache

/// What this mount knows of its files' POSIX attributes beyond what the server stores: the
/// mode and owner set here (until the server has them), and the times Nextcloud cannot keep
/// (nanoseconds of mtime, atime, ctime). Keyed by path, in memory, and in `attributes.sqlite`
/// in the state folder so they survive a remount.
///
/// Written behind: a change is in memory at once and in the database within `flushDelay`
/// (20 ms), every change of that window in one transaction. One commit per change would put
/// four or five commits on the path of every file `rsync -a` copies (create 0600, chmod,
/// utimensat, rename); a crash of the daemon loses at most the last 20 ms of mode changes,
/// never a file.
///
/// A record exists only for a file something was done to: a file whose mode, owner and times
/// are the defaults has none, so a bulk copy of ordinary files costs no row and no request.
///
/// Mode and owner (`posix`) are the local truth while `pending` (the background sync has not
/// stored them on the server yet); once stored, the first listing that shows the same value
/// hands authority back to the server (`confirm`), so another mount's later change is seen.
final class AttributeStore: @unchecked Sendable {
    // @unchecked: `records`, `dirty` and `stopped` are guarded by `condition`
    // (its lock is a leaf: nothing else is taken while it is held); the database has its own
    // lock and is used only by the flusher (and `flush`), outside `condition`.

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

    private let condition = NSCondition()
    /// Held across a batch's snapshot and its commit, so two flushes (the flusher's and the
    /// unmount's) cannot commit an older value of a row after a newer one. Taken before
    /// `condition`.
    private let flushLock = NSLock()
    private var records: [String: Record] = [:]
    /// Paths whose row differs from `records` (a missing record: the row is to be deleted).
    private var dirty: Set<String> = []
    private var stopped = false
    private let database: SQLiteDatabase?
    private let flushDelay: useconds_t = 20_000

    /// In memory only (a read-only mount, or tests).
    init() { database = nil }

    /// Opens (or creates) `attributes.sqlite` in `directory`, loads every record and starts
    /// the flusher.
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
        let thread = Thread { [self] in flushLoop() }
        thread.name = "ncfs-attributes-db"
        thread.start()
    }

    var isEmpty: Bool { condition.lock(); defer { condition.unlock() }; return records.isEmpty }

    func record(_ path: String) -> Record? {
        condition.lock(); defer { condition.unlock() }
        return records[path]
    }

    /// Changes the record of `path` (created if missing, removed when left empty).
    func update(_ path: String, _ change: (inout Record) -> Void) {
        condition.lock(); defer { condition.unlock() }
        var record = records[path] ?? Record()
        change(&record)
        set(path, record)
    }

    /// Every record below `folder` that holds a mode is to be stored again (the server lost
    /// the properties below a moved folder).
    func markPending(below folder: String) {
        condition.lock(); defer { condition.unlock() }
        let prefix = folder + "/"
        for (path, record) in records where path.hasPrefix(prefix) && record.posix != nil && !record.pending {
            var again = record
            again.pending = true
            set(path, again)
        }
    }

    /// The server now shows `posix` for `path`: a stored (not pending) record that says the
    /// same gives up its copy, and the server's value counts from now on.
    func confirm(_ path: String, _ posix: PosixAttributes) {
        condition.lock(); defer { condition.unlock() }
        guard var record = records[path], !record.pending, record.posix == posix else { return }
        record.posix = nil
        set(path, record)
    }

    /// The sync stored `posix` on the server: no longer pending, unless it changed meanwhile.
    func stored(_ path: String, _ posix: PosixAttributes) {
        condition.lock(); defer { condition.unlock() }
        guard var record = records[path], record.pending, record.posix == posix else { return }
        record.pending = false
        set(path, record)
    }

    /// Mode and owner waiting for the server, at most `limit` of them.
    func pending(limit: Int) -> [(path: String, posix: PosixAttributes)] {
        condition.lock(); defer { condition.unlock() }
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
        condition.lock(); defer { condition.unlock() }
        removeLocked(path, tree: tree)
    }

    /// A rename: the records at and (for a folder) below `from` move to `to`, replacing what
    /// was there.
    func rename(from: String, to: String, tree: Bool) {
        condition.lock(); defer { condition.unlock() }
        removeLocked(to, tree: tree)
        if let record = records[from] { set(from, nil); set(to, record) }
        guard tree else { return }
        let prefix = from + "/"
        for key in Array(records.keys) where key.hasPrefix(prefix) {
            let record = records[key]
            set(key, nil)
            set(to + key.dropFirst(from.count), record)
        }
    }

    /// Writes every change so far to the database (the flusher does it by itself; this is
    /// for the unmount).
    func flush() {
        guard let database else { return }
        flushLock.lock(); defer { flushLock.unlock() }
        condition.lock()
        let batch = dirty.map { ($0, records[$0]) }
        dirty.removeAll()
        condition.unlock()
        guard !batch.isEmpty else { return }
        do {
            try database.transaction(durability: .crashSafe) { (c: borrowing SQLiteConnection) throws(SQLiteError) in
                for (path, record) in batch {
                    guard let record else {
                        try c.execute("DELETE FROM attributes WHERE path = ?1", [.text(path)])
                        continue
                    }
                    try c.execute("""
                        INSERT OR REPLACE INTO attributes (path, mode, uid, gid, pending, mtime_ns, atime_ns, ctime_ns)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                        """, [.text(path), SQLiteValue(record.posix.map { Int64($0.mode) }), SQLiteValue(record.posix.map { Int64($0.uid) }),
                              SQLiteValue(record.posix.map { Int64($0.gid) }), .integer(record.pending ? 1 : 0),
                              SQLiteValue(record.mtime), SQLiteValue(record.atime), SQLiteValue(record.ctime)])
                }
            }
        } catch {
            // Kept in memory and tried again with the next batch.
            condition.lock()
            for (path, _) in batch { dirty.insert(path) }
            condition.unlock()
        }
    }

    /// Flushes what is left and stops the flusher.
    func close() {
        condition.lock(); stopped = true; condition.signal(); condition.unlock()
        flush()
    }

    // MARK: Private (caller holds `condition`)

    private func set(_ path: String, _ record: Record?) {
        records[path] = record.flatMap { $0.isEmpty ? nil : $0 }
        guard database != nil else { return }
        if dirty.isEmpty { condition.signal() }
        dirty.insert(path)
    }

    private func removeLocked(_ path: String, tree: Bool) {
        if records[path] != nil { set(path, nil) }
        guard tree else { return }
        let prefix = path + "/"
        for key in Array(records.keys) where key.hasPrefix(prefix) { set(key, nil) }
    }

    private func flushLoop() {
        condition.lock()
        while !stopped {
            if dirty.isEmpty { condition.wait(); continue }
            condition.unlock()
            // Gathers the changes of the next moment into the same transaction. On the wall
            // clock, not the injected one: this window paces disk commits (how many per second
            // a bulk chmod costs), no behaviour a test waits for, and `close` flushes without
            // waiting for it. On a manual clock it would hold every change out of the database
            // until a test happened to advance the clock.
            usleep(flushDelay)
            flush()
            condition.lock()
        }
        condition.unlock()
    }
}
