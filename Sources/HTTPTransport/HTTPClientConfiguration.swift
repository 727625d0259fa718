import Foundation

/// Login name and app password, sent as HTTP Basic on every request (no cookie session: see
/// the reference's CSRF notes). The password is never printed: `description` redacts it.
public struct Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    public var description: String { "\(user):<redacted>" }
    public var debugDescription: String { description }
}

public struct HTTPClientConfiguration: Sendable {
    public static let version = "0.1.0"

    public var credentials: Credentials?
    /// A distinct, non-browser User-Agent: browser-like agents get HTML error pages from
    /// Nextcloud, and old `mirall/` versions are refused outright.
    public var userAgent: String = "ncfs/\(HTTPClientConfiguration.version)"
    /// TLS peer and host verification. Turning it off must be explicit (`--insecure`).
    public var verifyTLS: Bool = true
    /// Extra CA bundle (PEM), e.g. for a self-signed test deployment.
    public var caFile: String?
    /// Public-key pinning, in libcurl's form: `sha256//BASE64` hashes of the server's
    /// SubjectPublicKeyInfo, several joined by `;`. A server whose key matches none is refused,
    /// in addition to the usual verification.
    public var pinnedPublicKey: String?
    public var connectTimeout: Duration = .seconds(10)
    /// Stall detector: a transfer moving fewer than `lowSpeedBytesPerSecond` for `stallTimeout`
    /// is aborted (and retried per policy). 30 s leaves room for Nextcloud's brute-force delay
    /// (up to 25 s) on a request that then proceeds normally.
    public var stallTimeout: Duration = .seconds(30)
    public var lowSpeedBytesPerSecond: Int = 1
    public var retry: RetryPolicy = RetryPolicy()
    /// How many idle easy handles (each holding its kept-alive connection) are kept.
    public var maxIdleConnections: Int = 16

    public init(credentials: Credentials? = nil) {
        self.credentials = credentials
    }
}

/// Removes secrets from a URL before it is logged: user info, query strings, and public share
/// tokens (`/public.php/dav/files/<token>/`, `/s/<token>`), which grant access on their own.
public func redactedForLog(_ url: String) -> String {
    var s = url
    if let q = s.firstIndex(of: "?") { s = String(s[..<q]) + "?…" }
    if let scheme = s.range(of: "://"), let at = s[scheme.upperBound...].firstIndex(of: "@"),
       !s[scheme.upperBound..<at].contains("/") {
        s.replaceSubrange(scheme.upperBound...at, with: "")
    }
    for marker in ["/public.php/dav/files/", "/public.php/dav/uploads/", "/index.php/s/", "/s/"] {
        guard let r = s.range(of: marker) else { continue }
        let rest = s[r.upperBound...]
        let end = rest.firstIndex(of: "/") ?? rest.endIndex
        s.replaceSubrange(r.upperBound..<end, with: "<token>")
        break
    }
    return s
}
