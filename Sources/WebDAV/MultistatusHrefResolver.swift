import Foundation

/// Turns a `d:href` into a path relative to the listing's root, or refuses it.
///
/// Hrefs are the one thing in a multistatus that becomes a local file name, so every way a
/// server (or a man in the middle) could aim one somewhere else is closed here: another origin,
/// a path outside the root, `..` spelt plainly or as `%2e%2e`, a `%2f` smuggling a slash into a
/// name, NUL and other control characters, invalid UTF-8. Segments are split on the *encoded*
/// slashes, so a decoded slash can only mean an attack and is refused.
///
/// Works on bytes: it runs once per entry of every listing.
struct MultistatusHrefResolver {
    private struct Origin: Equatable {
        var scheme: String
        var host: String
        var port: Int?
    }

    private static let slash = UInt8(ascii: "/")

    private let origin: Origin?
    /// The decoded root as `/a/b` (no trailing slash; empty for `/`), compared byte-wise first.
    private let rootPath: [UInt8]
    /// The same, split, for the rare byte mismatch that is only a Unicode normalisation difference.
    private let rootSegments: [String]

    /// - Parameters:
    ///   - requestURL: the absolute URL the request went to; full-URL hrefs must share its origin.
    ///     If it cannot be parsed, every full-URL href is refused (path-only hrefs still work).
    ///   - root: the decoded absolute path results are relative to; a trailing slash is optional.
    init(requestURL: String, root: String) {
        origin = Self.splitAbsoluteURL(Array(requestURL.utf8)[...], defaultScheme: nil)?.origin
        rootSegments = root.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        rootPath = Array(rootSegments.map { "/" + $0 }.joined().utf8)
    }

    /// - Parameters:
    ///   - bytes: the href's bytes, trimmed.
    ///   - href: the same as a String, for error values.
    func resolve(_ bytes: ArraySlice<UInt8>, href: String) throws(MultistatusError) -> String {
        var pathStart = bytes.startIndex
        if bytes.first != Self.slash || bytes.dropFirst().first == Self.slash {
            // A full URL, or a network-path reference (`//host/path`, the request's scheme).
            guard let origin else { throw .hrefOutsideRoot(href) }
            guard let (hrefOrigin, start) = Self.splitAbsoluteURL(bytes, defaultScheme: origin.scheme) else {
                throw .invalidHref(href)
            }
            guard hrefOrigin == origin else { throw .hrefOutsideRoot(href) }
            pathStart = start
        }
        let decoded = try Self.decodePath(bytes[pathStart...], href: href)
        let relative: ArraySlice<UInt8>
        if decoded.starts(with: rootPath) && (decoded.count == rootPath.count || decoded[rootPath.count] == Self.slash) {
            relative = decoded[min(rootPath.count + 1, decoded.count)...]
        } else {
            relative = try relativeByUnicodeEquivalence(decoded, href: href)[...]
        }
        guard let path = String(validating: relative, as: UTF8.self) else { throw .invalidHref(href) }
        // Nextcloud stores and returns NFC (reference §8.4); normalising what arrives keeps a
        // name that some other server or client spelt in NFD from becoming a second entry.
        // ASCII is its own NFC, which spares the Foundation call for almost every name.
        if relative.allSatisfy({ $0 < 0x80 }) { return path }
        return path.precomposedStringWithCanonicalMapping
    }

    /// The byte comparison failed: the href is outside the root, unless it differs from it only
    /// in normalisation (String equality is canonical equivalence), e.g. an NFD user name.
    private func relativeByUnicodeEquivalence(_ decoded: [UInt8], href: String) throws(MultistatusError) -> [UInt8] {
        guard !(decoded.allSatisfy { $0 < 0x80 } && rootPath.allSatisfy { $0 < 0x80 }) else {
            throw .hrefOutsideRoot(href)
        }
        guard let path = String(validating: decoded, as: UTF8.self) else { throw .invalidHref(href) }
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        guard segments.count >= rootSegments.count,
              zip(segments, rootSegments).allSatisfy({ String($0) == $1 }) else {
            throw .hrefOutsideRoot(href)
        }
        return Array(segments[rootSegments.count...].joined(separator: "/").utf8)
    }

    /// Percent-decodes an absolute path segment by segment (split on the encoded slashes), with
    /// the trailing slash of a collection removed: `/a%20b/c/` → `/a b/c`.
    private static func decodePath(_ path: ArraySlice<UInt8>, href: String) throws(MultistatusError) -> [UInt8] {
        guard path.first == slash else { throw .invalidHref(href) }
        var decoded: [UInt8] = [slash]
        decoded.reserveCapacity(path.count)
        var segmentStart = 1
        var i = path.startIndex + 1
        while true {
            let atEnd = i == path.endIndex
            if atEnd || path[i] == slash {
                let segment = decoded[segmentStart...]
                if segment.isEmpty {
                    // Only a trailing slash (or the path `/` itself) may leave a segment empty.
                    guard atEnd else { throw .invalidHref(href) }
                    if decoded.count > 1 { decoded.removeLast() }
                    return decoded
                }
                if segment.elementsEqual(CollectionOfOne(UInt8(ascii: "."))) || segment.elementsEqual("..".utf8) {
                    throw .invalidHref(href)
                }
                if atEnd { return decoded }
                decoded.append(slash)
                segmentStart = decoded.count
                i += 1
                continue
            }
            var byte = path[i]
            switch byte {
            case UInt8(ascii: "%"):
                guard i + 2 < path.endIndex, let high = hexValue(path[i + 1]), let low = hexValue(path[i + 2]) else {
                    throw .invalidHref(href)
                }
                byte = high << 4 | low
                i += 3
            case UInt8(ascii: "?"), UInt8(ascii: "#"):
                // A query or fragment has no place in a WebDAV href.
                throw .invalidHref(href)
            default:
                i += 1
            }
            if byte < 0x20 || byte == 0x7F || byte == slash { throw .invalidHref(href) }
            decoded.append(byte)
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Parses `scheme://[userinfo@]host[:port]/path`, or `//host/path` when a default scheme is
    /// given, into the origin (scheme and host lowercased, default ports made explicit) and the
    /// index where the path starts (`bytes.endIndex` when there is none).
    private static func splitAbsoluteURL(_ bytes: ArraySlice<UInt8>, defaultScheme: String?) -> (origin: Origin, pathStart: Int)? {
        var i = bytes.startIndex
        let scheme: String
        if bytes.starts(with: "//".utf8), let defaultScheme {
            scheme = defaultScheme
        } else {
            while i < bytes.endIndex, isSchemeByte(bytes[i], first: i == bytes.startIndex) { i += 1 }
            guard i > bytes.startIndex, i < bytes.endIndex, bytes[i] == UInt8(ascii: ":") else { return nil }
            scheme = String(decoding: bytes[..<i], as: UTF8.self).lowercased()
            i += 1
        }
        guard bytes[i...].starts(with: "//".utf8) else { return nil }
        i += 2
        let authorityStart = i
        while i < bytes.endIndex, bytes[i] != slash, bytes[i] != UInt8(ascii: "?"), bytes[i] != UInt8(ascii: "#") {
            i += 1
        }
        var authority = bytes[authorityStart..<i]
        if let at = authority.lastIndex(of: UInt8(ascii: "@")) { authority = authority[(at + 1)...] }
        // The port follows the last colon, unless that colon is inside an IPv6 literal.
        var host = authority
        var port: Int?
        if let colon = authority.lastIndex(of: UInt8(ascii: ":")),
           !authority[colon...].contains(UInt8(ascii: "]")) {
            host = authority[..<colon]
            let digits = authority[(colon + 1)...]
            if !digits.isEmpty {
                guard digits.count <= 5, digits.allSatisfy({ (0x30...0x39).contains($0) }),
                      let value = Int(String(decoding: digits, as: UTF8.self)) else { return nil }
                port = value
            }
        }
        guard !host.isEmpty else { return nil }
        port = port ?? defaultPort(scheme)
        return (Origin(scheme: scheme, host: String(decoding: host, as: UTF8.self).lowercased(), port: port), i)
    }

    private static func isSchemeByte(_ byte: UInt8, first: Bool) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): true
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."): !first
        default: false
        }
    }

    private static func defaultPort(_ scheme: String) -> Int? {
        switch scheme {
        case "http": 80
        case "https": 443
        default: nil
        }
    }
}
