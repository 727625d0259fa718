import Foundation

/// The result of one exchange. `body` holds the response body for `.memory` sinks and, for
/// every sink, the (capped) body of a non-2xx answer so error bodies can be parsed but are
/// never written where content goes.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Body bytes received (after decompression) in the final attempt.
    public var bytesReceived: Int64
    /// How many attempts the exchange took (1 = no retry).
    public var attempts: Int
    /// Whether the final attempt had to open a new connection (false = an idle one was reused).
    public var openedConnection: Bool

    public var isSuccess: Bool { (200..<300).contains(status) }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Where the body of a successful (2xx) response goes.
public enum ResponseSink {
    /// Kept in `HTTPResponse.body`; more than `limit` bytes fails with `.responseTooLarge`.
    case memory(limit: Int)
    /// Written to a file created (or truncated) at `path` once a 2xx status has arrived.
    case file(path: String)
    /// Handed over chunk by chunk on the calling thread; throwing aborts the transfer and the
    /// error is rethrown from `perform`. A retry is only made if no chunk had been delivered.
    case stream((UnsafeRawBufferPointer) throws -> Void)

    public static let defaultMemoryLimit = 64 << 20
}
