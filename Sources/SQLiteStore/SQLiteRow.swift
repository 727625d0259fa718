import Foundation
internal import CSQLite

/// One row of a query result, its columns addressable by position or by name.
///
/// The throwing accessors are for NOT NULL columns: a NULL or a value of another storage
/// class there means the file does not hold what the schema promises, which is reported as
/// an `SQLiteError` (`SQLITE_MISMATCH`) naming the column rather than trapping.
public struct SQLiteRow: Sendable {
    /// Column names as the statement declared them (`AS` aliases included), shared by all
    /// rows of one result.
    public let columns: [String]
    public let values: [SQLiteValue]
    /// The statement that produced the row, for error messages.
    public let sql: String

    public subscript(index: Int) -> SQLiteValue { values[index] }

    /// The value of the column named `name`; NULL when the result has no such column, which is
    /// what an absent optional column means to a reader.
    public subscript(name: String) -> SQLiteValue {
        guard let i = columns.firstIndex(of: name) else { return .null }
        return values[i]
    }

    public func int64(_ name: String) throws(SQLiteError) -> Int64 {
        try require(name, "INTEGER") { $0.int64 }
    }

    public func double(_ name: String) throws(SQLiteError) -> Double {
        try require(name, "REAL") { $0.double }
    }

    public func string(_ name: String) throws(SQLiteError) -> String {
        try require(name, "TEXT") { $0.string }
    }

    public func bytes(_ name: String) throws(SQLiteError) -> [UInt8] {
        try require(name, "BLOB") { $0.bytes }
    }

    private func require<T>(_ name: String, _ type: String, _ get: (SQLiteValue) -> T?) throws(SQLiteError) -> T {
        let value = self[name]
        guard let v = get(value) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "column \(name) is \(value.storageClass), expected \(type)", sql: sql)
        }
        return v
    }
}
