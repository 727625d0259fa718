import Foundation
public import HTTPTransport

/// Every way a WebDAV operation can fail, in the vocabulary the layers above need (the
/// filesystem maps `kind` to an errno in one exhaustive switch). The server's own words, when
/// it sent a Sabre error body, are kept in `server` for messages and logs.
public struct DAVError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// 404, or a missing parent reported as 409 on a read.
        case notFound
        /// 401: wrong login or app password, revoked app password, 2FA account with a login password.
        case unauthorized
        /// 403: no permission, read-only share, outside the DAV base.
        case forbidden
        /// 409: the parent of a new item does not exist, or PUT on a folder.
        case conflict
        /// 405 on MKCOL: the path exists already.
        case alreadyExists
        /// 412: an If-Match/If-None-Match or `Overwrite: F` condition failed.
        case preconditionFailed
        /// 423 after the retry budget: the file is locked on the server.
        case locked
        /// 507: quota exceeded.
        case insufficientStorage
        /// 400 from the server (invalid path, length mismatch, bad request).
        case badRequest
        /// Refused locally before any request: a name Nextcloud would reject.
        case invalidName
        /// 429 after the retry budget: brute-force or rate-limit throttling.
        case throttled
        /// 503 after the retry budget, e.g. maintenance mode.
        case unavailable
        /// Any other status (5xx, 415, unexpected 2xx/3xx).
        case server
        /// No HTTP answer at all (connect, TLS, timeout).
        case transport
        /// The answer was not what the protocol allows (bad XML, escaping href, missing header).
        case protocolViolation
        /// The server lacks a feature (a generic WebDAV server has no trash bin or chunking).
        case unsupported

        /// Whether the same request may succeed later with nothing changed on this side: the
        /// network, the server's state (5xx, maintenance, throttling, a lock, a full quota) or
        /// an answer that could not be read. The one classification every background worker
        /// starts from (write-back, ingest, the attribute sync); each names the few kinds its
        /// context treats otherwise, such as a missing parent folder that a rename or a new
        /// folder may bring back.
        public var isTransient: Bool {
            switch self {
            case .transport, .server, .unavailable, .throttled, .locked, .insufficientStorage, .protocolViolation: true
            case .notFound, .unauthorized, .forbidden, .conflict, .alreadyExists, .preconditionFailed, .badRequest,
                 .invalidName, .unsupported: false
            }
        }
    }

    public var kind: Kind
    public var method: String
    /// The path relative to the client's root (or the URL for non-file endpoints).
    public var path: String
    public var status: Int?
    public var server: DAVErrorBody?
    public var detail: String
    public var transport: HTTPError?

    public init(_ kind: Kind, method: String, path: String, status: Int? = nil, server: DAVErrorBody? = nil,
                detail: String = "", transport: HTTPError? = nil) {
        self.kind = kind
        self.method = method
        self.path = path
        self.status = status
        self.server = server
        self.detail = detail
        self.transport = transport
    }

    public var description: String {
        var s = "\(method) /\(path): "
        if let status { s += "HTTP \(status) " }
        s += "(\(kind))"
        if let m = server?.reason ?? server?.message, !m.isEmpty { s += ": \(m)" }
        if !detail.isEmpty { s += ": \(detail)" }
        if let transport { s += ": \(transport)" }
        return s
    }

    /// Maps an HTTP status to a kind; `method` decides the ambiguous ones (405 and 409).
    static func kind(forStatus status: Int, method: String) -> Kind {
        switch status {
        case 400: return .badRequest
        case 401: return .unauthorized
        case 403: return .forbidden
        case 404, 410: return .notFound
        case 405: return method == "MKCOL" ? .alreadyExists : .server
        case 409: return .conflict
        case 412: return .preconditionFailed
        case 423: return .locked
        case 429: return .throttled
        case 503: return .unavailable
        case 507: return .insufficientStorage
        default: return .server
        }
    }

    static func from(response: HTTPResponse, method: String, path: String) -> DAVError {
        DAVError(kind(forStatus: response.status, method: method), method: method, path: path,
                 status: response.status, server: DAVErrorBody.parse(response.body))
    }
}
