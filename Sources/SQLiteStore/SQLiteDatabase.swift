import Foundation
internal import CSQLite
internal import SystemPackage

/// One SQLite database file behind one connection, for durable local state (the write-back
/// journal, later the ingest catalog).
///
/// Every database opened for writing runs with
/// - `journal_mode=WAL`: a commit appends to the `-wal` file instead of rewriting pages, and
///   readers in other processes (`ncfs status`) read while the daemon writes, without blocking it;
/// - `synchronous=FULL` by default: a commit is fsynced before it returns, so a committed change
///   survives a crash of the daemon or of the machine. A caller may ask for less per statement
///   (`Durability.crashSafe`: NORMAL, the usual WAL setting) for changes that are cheap to lose
///   on power loss: they survive a crash of the process, and the next durable commit (or
///   checkpoint) makes them durable too, since the WAL is synced in order;
/// - `foreign_keys=ON` (SQLite leaves them off for compatibility);
/// - `temp_store=MEMORY`: the statement journal of an UPDATE of several rows lives in memory,
///   not in a temporary file created and deleted for every such statement;
/// - a 5 s busy timeout: inside one process the lock below serialises all use, so waits come
///   only from another process (a checkpoint, a second writer by mistake) and are short.
///
/// The file is created with mode 0600 before SQLite opens it (it names the user's files);
/// SQLite gives its `-wal` and `-shm` files the mode of the database file. The folder is the
/// caller's to create.
public final class SQLiteDatabase: @unchecked Sendable {
    // @unchecked: `connection` is used only while `lock` is held: each statement, and the
    // `sqlite3_errmsg` read right after a failed one (the message belongs to the connection, so
    // a call from another thread in between would replace it). The connection is opened
    // SQLITE_OPEN_NOMUTEX because of this lock. `lock` is a leaf: nothing else is taken while
    // it is held, and a transaction's body must use the connection it is given, not `self`.
    private let lock = NSLock()
    private let connection: SQLiteConnection
    public let path: String
    /// The connection's `synchronous` setting now (guarded by `lock`); nil for a read-only one.
    private var synchronous: Durability?

    /// How far a commit is on disk when it returns.
    public enum Durability: Sendable {
        /// fsynced (`synchronous=FULL`): survives power loss.
        case durable
        /// Written to the WAL but not synced (`synchronous=NORMAL`): survives a crash of this
        /// process, not of the machine, until the next durable commit or checkpoint syncs it.
        case crashSafe

        var pragma: String {
            switch self {
            case .durable: "PRAGMA synchronous = FULL"
            case .crashSafe: "PRAGMA synchronous = NORMAL"
            }
        }
    }

    /// Opens (creating if needed) the database at `path` for reading and writing.
    public convenience init(path: String) throws(SQLiteError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.systemError(path) }
        // fchmod as well: an existing file keeps its mode through open(2).
        guard fchmod(fd, 0o600) == 0 else {
            let error = Self.systemError(path)
            close(fd)
            throw error
        }
        close(fd)

        try self.init(opening: path, flags: SQLITE_OPEN_READWRITE)
        let mode = try query("PRAGMA journal_mode = WAL").first?[0].string
        guard mode == "wal" else {
            throw SQLiteError(code: SQLITE_ERROR, message: "journal mode is \(mode ?? "unknown"), not WAL", sql: "PRAGMA journal_mode = WAL")
        }
        try execute(Durability.durable.pragma)
        synchronous = .durable
        try execute("PRAGMA foreign_keys = ON")
        try execute("PRAGMA temp_store = MEMORY")
    }

    /// Opens an existing database only for reading, for a process other than the one that
    /// writes it. WAL lets it read the last committed state while the writer keeps writing;
    /// every write through it fails with `SQLITE_READONLY`.
    public convenience init(readOnlyPath path: String) throws(SQLiteError) {
        try self.init(opening: path, flags: SQLITE_OPEN_READONLY)
    }

    private init(opening path: String, flags: Int32) throws(SQLiteError) {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteError(code: rc, message: "\(path): \(message)", sql: nil)
        }
        sqlite3_busy_timeout(handle, 5000)
        self.connection = SQLiteConnection(handle: handle, statements: StatementCache())
        self.path = path
    }

    deinit {
        connection.statements.finalizeAll()
        sqlite3_close_v2(connection.handle)
    }

    /// Runs one statement in its own transaction; see `SQLiteConnection.execute`.
    @discardableResult
    public func execute(_ sql: String, _ bindings: [SQLiteValue] = [], durability: Durability = .durable) throws(SQLiteError) -> Int {
        lock.lock(); defer { lock.unlock() }
        try use(durability)
        return try connection.execute(sql, bindings)
    }

    /// Runs one statement in its own transaction; see `SQLiteConnection.query`.
    public func query(_ sql: String, _ bindings: [SQLiteValue] = [], durability: Durability = .durable) throws(SQLiteError) -> [SQLiteRow] {
        lock.lock(); defer { lock.unlock() }
        try use(durability)
        return try connection.query(sql, bindings)
    }

    /// Switches the connection's `synchronous` setting for the next commit (caller holds
    /// `lock`; outside any transaction, where SQLite takes the change).
    private func use(_ durability: Durability) throws(SQLiteError) {
        guard let current = synchronous, current != durability else { return }
        try connection.execute(durability.pragma)
        synchronous = durability
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it (or the
    /// commit) throws. `BEGIN IMMEDIATE` takes the write lock up front, so a transaction that
    /// reads before it writes waits for another writer at its start (busy timeout) instead of
    /// failing halfway with `SQLITE_BUSY_SNAPSHOT`, which WAL gives a read that turns into a write.
    @discardableResult
    public func transaction<T>(durability: Durability = .durable,
                               _ body: (borrowing SQLiteConnection) throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        lock.lock(); defer { lock.unlock() }
        try use(durability)
        try connection.execute("BEGIN IMMEDIATE")
        do {
            let result = try body(connection)
            try connection.execute("COMMIT")
            return result
        } catch {
            // Some failures (SQLITE_FULL, SQLITE_IOERR) have rolled back already; the error to
            // report is the one that got us here.
            if sqlite3_get_autocommit(connection.handle) == 0 { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    /// `PRAGMA user_version`; set it inside the migration's transaction with
    /// `SQLiteConnection.setUserVersion`.
    public func userVersion() throws(SQLiteError) -> Int {
        lock.lock(); defer { lock.unlock() }
        return try connection.userVersion()
    }

    /// `PRAGMA integrity_check`: "ok" for a sound file, else SQLite's findings, one per line.
    public func integrityCheck() throws(SQLiteError) -> String {
        try query("PRAGMA integrity_check").compactMap { $0[0].string }.joined(separator: "\n")
    }

    /// An `SQLITE_CANTOPEN` naming the path and `errno`'s text, for failures before SQLite is involved.
    private static func systemError(_ path: String) -> SQLiteError {
        SQLiteError(code: SQLITE_CANTOPEN, message: "\(path): \(Errno(rawValue: errno).description)", sql: nil)
    }
}
