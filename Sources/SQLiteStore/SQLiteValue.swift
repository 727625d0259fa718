import Foundation

/// A value as SQLite stores it: one of its five storage classes. Used for bound parameters
/// and for the columns of a result row.
public enum SQLiteValue: Sendable, Hashable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
    case null

    public init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
    public init(_ value: Int) { self = .integer(Int64(value)) }
    public init(_ value: Double?) { self = value.map { .real($0) } ?? .null }
    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    public init(_ value: [UInt8]?) { self = value.map { .blob($0) } ?? .null }
    public init(_ value: Data?) { self = value.map { .blob([UInt8]($0)) } ?? .null }

    /// The integer, or nil for any other storage class.
    public var int64: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }

    /// The real, or an integer widened to Double (SQLite stores integral REAL values of a
    /// column with REAL affinity as integers on disk but reports them as REAL; a column without
    /// that affinity may hand back either).
    public var double: Double? {
        switch self {
        case .real(let v): return v
        case .integer(let v): return Double(v)
        case .text, .blob, .null: return nil
        }
    }

    /// The text, or nil for any other storage class.
    public var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }

    /// The blob's bytes, or nil for any other storage class.
    public var bytes: [UInt8]? {
        if case .blob(let v) = self { return v }
        return nil
    }

    /// The blob's bytes as `Data`, or nil for any other storage class.
    public var data: Data? { bytes.map { Data($0) } }

    public var isNull: Bool { self == .null }

    /// The storage class's SQL name, for messages (never the value: it may be a user's file name).
    var storageClass: String {
        switch self {
        case .integer: return "INTEGER"
        case .real: return "REAL"
        case .text: return "TEXT"
        case .blob: return "BLOB"
        case .null: return "NULL"
        }
    }
}

extension SQLiteValue: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByStringLiteral,
    ExpressibleByNilLiteral {
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .real(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(nilLiteral: ()) { self = .null }
}
