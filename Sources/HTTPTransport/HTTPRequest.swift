import Foundation

/// One HTTP request as the transport sends it. The transport knows nothing of WebDAV: the
/// method is any token, headers are passed through, and the body is a byte source that can be
/// re-read from the start (so a retried request sends the same bytes again).
public struct HTTPRequest: Sendable {
    public var method: String
    /// Absolute URL, already percent-encoded. Never carries credentials.
    public var url: String
    public var headers: HTTPHeaders
    public var body: HTTPRequestBody
    /// Whether a transport failure after the request may have been applied can be retried.
    /// Defaults to RFC 9110's idempotent methods plus PROPFIND/PROPPATCH/SEARCH.
    public var idempotent: Bool
    /// Ask for gzip/br/zstd. Off for content reads, so byte ranges stay byte ranges.
    public var acceptCompressed: Bool
    /// Upper bound for the whole exchange (all bytes); nil = only the stall detector applies.
    public var timeout: Duration?

    public init(
        method: String,
        url: String,
        headers: HTTPHeaders = HTTPHeaders(),
        body: HTTPRequestBody = .empty,
        idempotent: Bool? = nil,
        acceptCompressed: Bool = true,
        timeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.idempotent = idempotent ?? HTTPRequest.isIdempotent(method)
        self.acceptCompressed = acceptCompressed
        self.timeout = timeout
    }

    static func isIdempotent(_ method: String) -> Bool {
        switch method.uppercased() {
        case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PROPFIND", "PROPPATCH", "SEARCH", "REPORT":
            return true
        default:
            return false
        }
    }
}

/// Where a request body comes from. Both cases can be re-read, which retries and libcurl's
/// rewinds (after a 401 challenge or a redirect) need.
public enum HTTPRequestBody: Sendable {
    case empty
    case bytes([UInt8])
    /// `length` bytes of the file at `path` starting at `offset`; read while sending, never
    /// loaded whole into memory.
    case file(path: String, offset: Int64 = 0, length: Int64)

    public static func text(_ s: String) -> HTTPRequestBody { .bytes(Array(s.utf8)) }

    var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

/// An ordered, case-insensitive header list. Small (a dozen entries), so linear lookups win.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        for (n, v) in elements { add(n, v) }
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Replaces every field of that name with one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        fields.append((name, value))
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    public subscript(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}
