import Foundation

/// A failed SQLite call: the result code, SQLite's own message, and the statement that failed,
/// so a log line says what went wrong without a debugger. Statements only ever carry `?`
/// placeholders (values are bound, never spliced in), so the SQL is safe to log.
public struct SQLiteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SQLite's extended result code (`SQLITE_BUSY_TIMEOUT`, `SQLITE_CONSTRAINT_UNIQUE`, …);
    /// `primaryCode` is the family (`SQLITE_BUSY`, `SQLITE_CONSTRAINT`, …).
    public let code: Int32
    /// `sqlite3_errmsg` at the time of the failure, or the reason for a failure outside SQLite
    /// (opening the file, a column of an unexpected type, an unknown schema version).
    public let message: String
    /// The statement that failed; nil when no statement was involved (opening the file).
    public let sql: String?

    public init(code: Int32, message: String, sql: String?) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// The primary result code: the low byte of the extended one.
    public var primaryCode: Int32 { code & 0xff }

    public var description: String {
        if let sql { return "SQLite error \(code): \(message) (in: \(sql))" }
        return "SQLite error \(code): \(message)"
    }
}
