import Foundation
internal import CSQLite

/// The connection of an `SQLiteDatabase`, lent to the body of `SQLiteDatabase.transaction`:
/// statements run through it belong to that transaction. Noncopyable and only ever borrowed,
/// so it cannot outlive the body, and with it the lock that makes using it safe.
///
/// Each statement is prepared once and kept (`StatementCache`, keyed by its SQL): the journal
/// runs a handful of the same statements for every file written, most of them committed
/// without an fsync, so preparing them again each time would be a large part of their cost.
public struct SQLiteConnection: ~Copyable {
    let handle: OpaquePointer
    let statements: StatementCache

    /// Runs one statement to completion and returns the number of rows it inserted, updated or
    /// deleted (0 for other statements).
    @discardableResult
    public func execute(_ sql: String, _ bindings: [SQLiteValue] = []) throws(SQLiteError) -> Int {
        try withStatement(sql, bindings) { statement throws(SQLiteError) in
            // A difference of the running total, because `sqlite3_changes` keeps the count of the
            // last INSERT/UPDATE/DELETE across statements of other kinds.
            let before = sqlite3_total_changes64(handle)
            while try step(statement, sql) {}
            return Int(sqlite3_total_changes64(handle) - before)
        }
    }

    /// Runs one statement and returns every row it produced (also for `… RETURNING`).
    public func query(_ sql: String, _ bindings: [SQLiteValue] = []) throws(SQLiteError) -> [SQLiteRow] {
        try withStatement(sql, bindings) { statement throws(SQLiteError) in
            let count = sqlite3_column_count(statement)
            let columns = (0..<count).map { sqlite3_column_name(statement, $0).map { String(cString: $0) } ?? "" }
            var rows: [SQLiteRow] = []
            while try step(statement, sql) {
                rows.append(SQLiteRow(columns: columns, values: (0..<count).map { value(statement, $0) }, sql: sql))
            }
            return rows
        }
    }

    /// `PRAGMA user_version`: the number a schema's owner stores in the file header to know
    /// which migrations have run. 0 in a new database.
    public func userVersion() throws(SQLiteError) -> Int {
        Int(try query("PRAGMA user_version").first?[0].int64 ?? 0)
    }

    public func setUserVersion(_ version: Int) throws(SQLiteError) {
        // A pragma takes no bound parameters; an Int cannot smuggle SQL in.
        try execute("PRAGMA user_version = \(version)")
    }

    /// The error SQLite reports for the last failed call on this connection.
    func error(_ code: Int32, _ sql: String?) -> SQLiteError {
        SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// The prepared statement for `sql`, from the cache or prepared now. Exactly one statement:
    /// trailing statements are refused rather than silently ignored, which is what
    /// `sqlite3_prepare_v3` would do.
    private func prepared(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let statement = statements.byText[sql] { return statement }
        var statement: OpaquePointer?
        let (rc, rest) = sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            let rc = sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            return (rc, tail.map { String(cString: $0) } ?? "")
        }
        guard rc == SQLITE_OK else { sqlite3_finalize(statement); throw error(rc, sql) }
        guard let statement else { throw SQLiteError(code: SQLITE_MISUSE, message: "no statement", sql: sql) }
        guard rest.allSatisfy(\.isWhitespace) else {
            sqlite3_finalize(statement)
            throw SQLiteError(code: SQLITE_MISUSE, message: "more than one statement", sql: sql)
        }
        statements.byText[sql] = statement
        return statement
    }

    /// Binds every parameter of the statement for `sql`, runs `body`, then resets the
    /// statement and clears its bindings for the next use (a blob bound is not kept alive).
    private func withStatement<T>(
        _ sql: String, _ bindings: [SQLiteValue], _ body: (OpaquePointer) throws(SQLiteError) -> T
    ) throws(SQLiteError) -> T {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let parameters = Int(sqlite3_bind_parameter_count(statement))
        guard parameters == bindings.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "\(parameters) parameters, \(bindings.count) values", sql: sql)
        }
        for (i, binding) in bindings.enumerated() {
            let rc = bind(binding, to: statement, at: Int32(i + 1))
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
        return try body(statement)
    }

    private func bind(_ value: SQLiteValue, to statement: OpaquePointer, at index: Int32) -> Int32 {
        switch value {
        case .integer(let v):
            return sqlite3_bind_int64(statement, index, v)
        case .real(let v):
            return sqlite3_bind_double(statement, index, v)
        case .text(let v):
            // Explicit length: a Swift string may hold NUL, which a C string would end at.
            return v.withCString {
                sqlite3_bind_text64(statement, index, $0, sqlite3_uint64(v.utf8.count), ncfs_sqlite_transient(), UInt8(SQLITE_UTF8))
            }
        case .blob(let v):
            // An empty array has no base address, and a NULL pointer would bind NULL, not an empty blob.
            if v.isEmpty { return sqlite3_bind_zeroblob(statement, index, 0) }
            return v.withUnsafeBytes {
                sqlite3_bind_blob64(statement, index, $0.baseAddress, sqlite3_uint64($0.count), ncfs_sqlite_transient())
            }
        case .null:
            return sqlite3_bind_null(statement, index)
        }
    }

    /// One step: true while the statement has a row to read.
    private func step(_ statement: OpaquePointer, _ sql: String) throws(SQLiteError) -> Bool {
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let rc: throw error(rc, sql)
        }
    }

    private func value(_ statement: OpaquePointer, _ column: Int32) -> SQLiteValue {
        switch sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER:
            return .integer(sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT:
            return .real(sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            // The pointer first, then the length: that order leaves the value in its stored form.
            let text = sqlite3_column_text(statement, column)
            let count = Int(sqlite3_column_bytes(statement, column))
            return .text(text.map { String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self) } ?? "")
        case SQLITE_BLOB:
            let blob = sqlite3_column_blob(statement, column)
            let count = Int(sqlite3_column_bytes(statement, column))
            return .blob(blob.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: count)) } ?? [])
        default:
            return .null
        }
    }
}

/// The prepared statements of one connection, by SQL text. Used only while the connection's
/// owner holds its lock (like the connection itself); `finalizeAll` runs before it closes.
final class StatementCache: @unchecked Sendable {
    var byText: [String: OpaquePointer] = [:]

    func finalizeAll() {
        for statement in byText.values { sqlite3_finalize(statement) }
        byText = [:]
    }
}
