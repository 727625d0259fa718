/// Splitting paths at their slashes, byte by byte. Swift's Character-based `split` and
/// `lastIndex(of:)` pass over a "/" that a combining mark follows (the two make one
/// Character), which would leave a slash inside a name, or a name in the wrong folder.
public enum PathBytes {
    /// The non-empty components of `path`.
    public static func components(_ path: some StringProtocol) -> [String] {
        path.utf8.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The last component of `path` (all of it without a slash; "" after a trailing slash).
    public static func lastComponent(_ path: String) -> String {
        split(path).name
    }

    /// `path` before its last slash; all of `path` without one (a remote path that is already
    /// a folder at the root of what the caller builds on).
    public static func beforeLastSlash(_ path: String) -> String {
        path.utf8.contains(UInt8(ascii: "/")) ? split(path).parent : path
    }

    /// `path` before and after its last slash; ("", path) without one.
    public static func split(_ path: String) -> (parent: String, name: String) {
        let bytes = path.utf8
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return ("", path) }
        return (String(decoding: bytes[..<slash], as: UTF8.self), String(decoding: bytes[bytes.index(after: slash)...], as: UTF8.self))
    }
}
