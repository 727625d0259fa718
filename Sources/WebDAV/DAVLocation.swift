import Foundation

/// Where a WebDAV tree lives, split the way the client needs it.
///
/// `https://cloud.example.com/nc/remote.php/dav/files/alice/Photos/` gives origin
/// `https://cloud.example.com`, install prefix `/nc`, user id `alice` and root path
/// `/nc/remote.php/dav/files/alice/Photos/`. The Nextcloud extras (trash bin, chunked uploads,
/// OCS, status.php) hang off the install prefix and user id; a URL that does not follow the
/// `/remote.php/dav/files/<user>/` layout is a generic WebDAV server, where they are absent.
public struct DAVLocation: Sendable, Equatable {
    /// `scheme://host[:port]`, no trailing slash.
    public let origin: String
    /// Decoded absolute path of the tree's root, always ending in "/".
    public let rootPath: String
    /// The Nextcloud installation's path prefix ("" at the web root), when the URL is a
    /// Nextcloud files URL.
    public let installPrefix: String?
    /// The user id from the files URL (which may differ from the login name).
    public let userID: String?
    /// The path of the tree's root below the user's files root ("" when mounting the whole
    /// account). Trash original locations and SEARCH scopes are relative to the files root.
    public let subPath: String

    public init(baseURL: String) throws {
        guard let schemeEnd = baseURL.range(of: "://") else { throw LocationError.invalid(baseURL, "no scheme") }
        let scheme = baseURL[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw LocationError.invalid(baseURL, "scheme must be http or https") }
        let afterScheme = baseURL[schemeEnd.upperBound...]
        let slash = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
        let authority = afterScheme[..<slash]
        guard !authority.isEmpty else { throw LocationError.invalid(baseURL, "no host") }
        guard !authority.contains("@") else {
            throw LocationError.invalid("<url with credentials>", "credentials do not belong in the URL; use NEXTCLOUD_WEBDAV_USER and an app password")
        }
        var rawPath = String(afterScheme[slash...])
        if let q = rawPath.firstIndex(where: { $0 == "?" || $0 == "#" }) { rawPath = String(rawPath[..<q]) }
        guard let decoded = rawPath.removingPercentEncoding else { throw LocationError.invalid(baseURL, "bad percent-encoding") }
        var path = decoded.isEmpty ? "/" : decoded
        if !path.hasSuffix("/") { path += "/" }
        origin = "\(scheme)://\(authority)"
        rootPath = path.precomposedStringWithCanonicalMapping

        if let r = rootPath.range(of: "/remote.php/dav/files/") {
            let rest = rootPath[r.upperBound...]
            let userEnd = rest.firstIndex(of: "/") ?? rest.endIndex
            let user = String(rest[..<userEnd])
            if !user.isEmpty {
                installPrefix = String(rootPath[..<r.lowerBound])
                userID = user
                subPath = rest[userEnd...].trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                return
            }
        }
        installPrefix = nil
        userID = nil
        subPath = ""
    }

    public enum LocationError: Error, CustomStringConvertible {
        case invalid(String, String)
        public var description: String {
            switch self { case .invalid(let url, let why): return "invalid WebDAV URL \(url): \(why)" }
        }
    }

    /// Whether the URL has the Nextcloud layout (extras may then be tried).
    public var isNextcloudLayout: Bool { userID != nil }

    /// Full URL of `relative` (a "/"-separated path below the root; "" = the root).
    public func url(_ relative: String, collection: Bool = false) -> String {
        url(absolutePath: rootPath + DAVLocation.normalize(relative), collection: collection)
    }

    /// Full URL of a decoded absolute server path.
    public func url(absolutePath: String, collection: Bool = false) -> String {
        var encoded = DAVLocation.percentEncodePath(absolutePath)
        if collection && !encoded.hasSuffix("/") { encoded += "/" }
        return origin + encoded
    }

    /// Decoded absolute path of the user's files root, e.g. `/remote.php/dav/files/alice/`.
    public var filesRootPath: String? {
        guard let installPrefix, let userID else { return nil }
        return "\(installPrefix)/remote.php/dav/files/\(userID)/"
    }

    /// `relative` below the mount root, expressed below the user's files root.
    public func filesRelative(_ relative: String) -> String {
        let r = DAVLocation.normalize(relative)
        if subPath.isEmpty { return r }
        return r.isEmpty ? subPath : subPath + "/" + r
    }

    /// Strips leading/trailing slashes and NFC-normalises, which is how Nextcloud stores names.
    public static func normalize(_ relative: String) -> String {
        relative.trimmingCharacters(in: CharacterSet(charactersIn: "/")).precomposedStringWithCanonicalMapping
    }

    /// Percent-encodes every byte outside RFC 3986's unreserved set, keeping "/" separators.
    public static func percentEncodePath(_ path: String) -> String {
        var out = ""
        out.reserveCapacity(path.utf8.count + 16)
        let hex: [Character] = Array("0123456789ABCDEF")
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out.append("%")
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}
