import Foundation

/// The names Nextcloud refuses, checked locally so a bad name costs no request and gets a
/// clear EINVAL instead of a 400 after an upload.
///
/// The fixed rules come from Nextcloud's `FilenameValidator` (see the reference, §8.1): empty,
/// `.`/`..`, 250 bytes or more, control characters, `/` and `\`, the `.part` extension. The
/// configurable lists arrive through the `files.forbidden_*` capabilities; names, basenames and
/// extensions compare case-insensitively, characters exactly.
public struct NameRules: Sendable, Equatable {
    public var forbiddenNames: Set<String> = [".htaccess"]
    public var forbiddenBasenames: Set<String> = []
    public var forbiddenCharacters: [String] = []
    public var forbiddenExtensions: [String] = [".part", ".filepart"]
    /// Nextcloud's `oc_filecache.name` holds 249 bytes; `isset($filename[250])` refuses more.
    public static let maxNameBytes = 249

    public init() {}

    /// Rules of a generic WebDAV server: only what no server can store.
    public static var generic: NameRules {
        var r = NameRules()
        r.forbiddenNames = []
        r.forbiddenExtensions = []
        return r
    }

    /// Returns nil when `name` is acceptable, else the reason (phrased like the server's).
    public func violation(in name: String) -> String? {
        if name.trimmingCharacters(in: .whitespaces).isEmpty { return "empty name" }
        if name == "." || name == ".." { return "\"\(name)\" is a reserved name" }
        if name.utf8.count > NameRules.maxNameBytes { return "name longer than \(NameRules.maxNameBytes) bytes" }
        for scalar in name.unicodeScalars where scalar.value < 0x20 || scalar == "/" || scalar == "\\" {
            return scalar.value < 0x20 ? "control characters are not allowed" : "\"\(scalar)\" is not allowed inside a name"
        }
        let lower = name.lowercased()
        if forbiddenNames.contains(lower) { return "\"\(name)\" is a forbidden file or folder name" }
        for c in forbiddenCharacters where !c.isEmpty && name.contains(c) { return "\"\(c)\" is not allowed inside a name" }
        for ext in forbiddenExtensions.map({ $0.lowercased() }) where !ext.isEmpty && lower.hasSuffix(ext) {
            return ext.trimmingCharacters(in: .whitespaces).isEmpty || ext == "."
                ? "names must not end with \"\(ext)\"" : "\"\(ext)\" is a forbidden file type"
        }
        if !forbiddenBasenames.isEmpty {
            // Basename: the part before the first dot that is not at position 0.
            let body = lower.dropFirst()
            let base = body.firstIndex(of: ".").map { String(lower[..<$0]) } ?? lower
            if forbiddenBasenames.contains(base) { return "\"\(base)\" is a forbidden name" }
        }
        return nil
    }

    public func check(_ name: String, method: String, path: String) throws {
        if let why = violation(in: name) {
            throw DAVError(.invalidName, method: method, path: path, detail: why)
        }
    }
}
