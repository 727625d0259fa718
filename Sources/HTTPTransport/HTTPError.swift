import Foundation
internal import SystemPackage

/// Failures below HTTP semantics: nothing in here says a status code was bad. Status handling
/// (401, 404, 412, …) belongs to the WebDAV layer, which reads `HTTPResponse.status`.
public enum HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// DNS, connect, TLS or a broken connection; `code` is libcurl's CURLcode.
    case transport(code: Int, message: String)
    /// No progress for the stall window, or the request's total timeout ran out.
    case timedOut(message: String)
    /// TLS certificate or host name verification failed.
    case tlsVerificationFailed(message: String)
    /// A memory sink's limit was exceeded.
    case responseTooLarge(limit: Int)
    /// The request body file could not be read.
    case bodyUnreadable(path: String, errno: Int32)
    /// The response file could not be written.
    case sinkFailed(message: String)
    /// The URL was refused before sending (malformed, credentials inside, unsupported scheme).
    case invalidURL(String)
    /// The client was shut down.
    case cancelled

    public var description: String {
        switch self {
        case .transport(let code, let message): return "network error (curl \(code)): \(message)"
        case .timedOut(let message): return "timed out: \(message)"
        case .tlsVerificationFailed(let message): return "TLS verification failed: \(message)"
        case .responseTooLarge(let limit): return "response larger than the \(limit)-byte limit"
        case .bodyUnreadable(let path, let e): return "cannot read \(path): \(Errno(rawValue: e).description)"
        case .sinkFailed(let message): return "cannot store the response: \(message)"
        case .invalidURL(let url): return "invalid URL: \(url)"
        case .cancelled: return "cancelled"
        }
    }

    /// True when the request certainly never reached the server, so even a non-idempotent
    /// request may be sent again.
    var requestNeverSent: Bool {
        if case .transport(let code, _) = self {
            return code == 6 /* COULDNT_RESOLVE_HOST */ || code == 7 /* COULDNT_CONNECT */
        }
        return false
    }

    /// The server's certificate or host name was refused, or the CA file could not be used.
    public var isTLSVerification: Bool {
        if case .tlsVerificationFailed = self { return true }
        return false
    }

    var isRetryable: Bool {
        switch self {
        case .transport, .timedOut: return true
        case .tlsVerificationFailed, .responseTooLarge, .bodyUnreadable, .sinkFailed, .invalidURL, .cancelled:
            return false
        }
    }
}
