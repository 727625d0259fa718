import Foundation
import WebDAV

/// What must hold for whatever a server sends, checked on the production parsers: the
/// multistatus reader with href resolution and the Depth-1 split, the OCS and status.php JSON
/// readers, and the error-body reader.
///
/// Shared by the libFuzzer target (`ncfs-fuzz`), which aborts on the first violation, and the
/// hostile-input tests, which expect none. "Not crashing" is the floor; the invariants are
/// what makes a parse safe to hand to the filesystem:
/// - every path resolves inside the listing root: relative, no `.`/`..` or empty component, no
///   NUL or other control byte, NFC as the resolver promises, and every name free of `/`
///   (checked byte-wise, since a slash followed by a combining mark is one `Character`);
/// - a Depth-1 split yields only direct children of the listed folder, each name once;
/// - sizes are nil or non-negative, dates convertible to whole seconds, status codes three
///   digits, checksums without separators;
/// - feeding the same body in pieces gives the same verdict and the same resources;
/// - the OCS readers return typed values only, and a server's capabilities cannot lift the
///   name rules no server can store (`..`, `/`, empty).
public enum ParserInvariants {
    /// One broken invariant: which check and what it saw.
    public struct Violation: Error, Equatable, CustomStringConvertible {
        public var check: String
        public var detail: String

        public var description: String { "\(check): \(detail)" }
    }

    /// A tree a multistatus body is read against: the request it answers and the root its
    /// hrefs must stay under (the same shapes as the real fixtures).
    struct Tree {
        var name: String
        var requestURL: String
        var root: String
        /// The folder a Depth-1 PROPFIND listed, relative to `root`.
        var listedFolder: String
        var limits: MultistatusLimits
    }

    static let trees = [
        Tree(name: "nextcloud", requestURL: "http://127.0.0.1:8080/remote.php/dav/files/alice/Photos/",
             root: "/remote.php/dav/files/alice/", listedFolder: "Photos", limits: MultistatusLimits()),
        Tree(name: "trash", requestURL: "http://127.0.0.1:8080/remote.php/dav/trashbin/alice/trash/",
             root: "/remote.php/dav/trashbin/alice/trash/", listedFolder: "", limits: MultistatusLimits()),
        // Tight limits, so short inputs reach the limit paths too.
        Tree(name: "apache", requestURL: "http://files.example.org/dav/media/", root: "/dav/", listedFolder: "media",
             limits: MultistatusLimits(maxBytes: 6 << 10, maxResponses: 8, maxTextLength: 256, maxDepth: 10)),
    ]

    /// Every invariant `input` breaks, on every parser; empty when all hold.
    public static func violations(in input: [UInt8]) -> [Violation] {
        var found: [Violation] = []
        for tree in trees { found += multistatusViolations(input, tree) }
        found += ocsViolations(input)
        found += errorBodyViolations(input)
        return found
    }

    // MARK: Multistatus

    static func multistatusViolations(_ input: [UInt8], _ tree: Tree) -> [Violation] {
        var found: [Violation] = []
        func fail(_ check: String, _ detail: String) { found.append(Violation(check: "\(tree.name): \(check)", detail: detail)) }

        let whole = Result { () throws(MultistatusError) in
            try MultistatusParser.parse(input, requestURL: tree.requestURL, root: tree.root, limits: tree.limits)
        }
        let pieces = Result { () throws(MultistatusError) in try parseInPieces(input, tree) }
        var parsed: [[DAVResource]] = []
        switch (whole, pieces) {
        case (.success(let a), .success(let b)):
            if a != b { fail("chunking", "the same body fed in pieces gave other resources") }
            parsed = [a]
        case (.success(let resources), .failure(let error)), (.failure(let error), .success(let resources)):
            // libxml2 2.9.14 runs a declared non-UTF-8 encoding through iconv, and where the
            // bytes do not fit that encoding, what the conversion makes of them depends on
            // where the pieces end (found by the fuzzer): refused one way, accepted the other.
            // Only that case is let through, and what was accepted still passes every check below.
            if declaresOtherEncoding(input) {
                parsed = [resources]
            } else {
                fail("chunking", "one way of feeding the body failed (\(error)), the other did not")
            }
        case (.failure, .failure):
            break
        }
        guard let resources = parsed.first else { return found }

        for resource in resources {
            for problem in resourceProblems(resource) { fail("resource", "\(resource.href.debugDescription): \(problem)") }
        }
        if let (_, children) = try? WebDAVClient.splitListing(resources, folder: tree.listedFolder) {
            var names = Set<String>()
            for child in children {
                let parent = child.path.utf8.lastIndex(of: UInt8(ascii: "/")).map { String(decoding: child.path.utf8[..<$0], as: UTF8.self) } ?? ""
                if parent.utf8.elementsEqual(tree.listedFolder.utf8) == false {
                    fail("listing", "\(child.path.debugDescription) is not a direct child of \(tree.listedFolder.debugDescription)")
                }
                if !names.insert(child.name).inserted { fail("listing", "the name \(child.name.debugDescription) appears twice") }
                if child.name.isEmpty { fail("listing", "a child without a name") }
            }
        }
        return found
    }

    /// Feeds `input` in pieces whose sizes follow from the input itself (deterministic, so a
    /// crash replays), splitting UTF-8 sequences and markup anywhere.
    static func parseInPieces(_ input: [UInt8], _ tree: Tree) throws(MultistatusError) -> [DAVResource] {
        let parser = MultistatusParser(requestURL: tree.requestURL, root: tree.root, limits: tree.limits)
        let seed = input.prefix(16).reduce(7) { ($0 &* 31 &+ Int($1)) & 0xFFFF }
        let sizes = [1 + seed % 13, 1, 2 + seed % 97, 3]
        var offset = 0
        var turn = 0
        var failure: MultistatusError?
        while offset < input.count, failure == nil {
            let length = min(sizes[turn % sizes.count], input.count - offset)
            input[offset..<(offset + length)].withUnsafeBytes { bytes in
                do throws(MultistatusError) { try parser.feed(bytes) } catch { failure = error }
            }
            offset += length
            turn += 1
        }
        if let failure { throw failure }
        return try parser.finish()
    }

    /// Whether libxml2 has to convert the document: a byte-order mark or NUL bytes at the start
    /// (UTF-16/32), or an XML declaration naming an encoding other than UTF-8.
    static func declaresOtherEncoding(_ input: [UInt8]) -> Bool {
        let head = input.prefix(256)
        if head.first.map({ $0 == 0xFE || $0 == 0xFF || $0 == 0 }) == true || head.prefix(4).contains(0) { return true }
        let text = String(decoding: head, as: UTF8.self).lowercased()
        guard let declaration = text.range(of: "encoding=") else { return false }
        let value = text[declaration.upperBound...].dropFirst().prefix { $0 != "\"" && $0 != "'" }
        return value != "utf-8" && value != "utf8"
    }

    /// What is wrong with one parsed resource; empty when nothing is.
    public static func resourceProblems(_ resource: DAVResource) -> [String] {
        var problems = pathProblems(resource.path)
        let name = resource.name
        if name.utf8.contains(UInt8(ascii: "/")) { problems.append("name \(name.debugDescription) contains a slash") }
        if !resource.path.utf8.reversed().starts(with: name.utf8.reversed()) {
            problems.append("name \(name.debugDescription) is not the last component of the path")
        }
        if resource.href.isEmpty { problems.append("empty href") }
        if let length = resource.contentLength, length < 0 { problems.append("negative content length \(length)") }
        if let size = resource.size, size < 0 { problems.append("negative size \(size)") }
        if resource.etag?.isEmpty == true { problems.append("empty ETag instead of nil") }
        if resource.contentType?.isEmpty == true { problems.append("empty content type instead of nil") }
        if let status = resource.status, !(0...999).contains(status) { problems.append("status \(status)") }
        for (property, status) in resource.failedProperties {
            if property.isEmpty { problems.append("failed property without a name") }
            if status == 200 || status == 404 || !(0...999).contains(status) {
                problems.append("failed property \(property) with status \(status)")
            }
        }
        for checksum in resource.checksums where checksum.isEmpty || checksum.utf8.contains(where: isSeparator) {
            problems.append("checksum entry \(checksum.debugDescription)")
        }
        for date in [resource.lastModified, resource.trash?.deletionTime].compactMap({ $0 }) {
            // RemoteEntry and the CLI turn dates into whole seconds with Int64(...), which traps
            // outside Int64's range.
            let seconds = date.timeIntervalSince1970
            if !seconds.isFinite || abs(seconds) > 253_402_300_800 { problems.append("date \(seconds) out of range") }
        }
        return problems
    }

    /// What makes `path` unsafe as a path below the mount root; empty when nothing does.
    /// "" is the root itself.
    public static func pathProblems(_ path: String) -> [String] {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty else { return [] }
        var problems: [String] = []
        let shown = path.debugDescription
        if bytes.first == UInt8(ascii: "/") { problems.append("\(shown) is absolute") }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty {
                problems.append("\(shown) has an empty component")
            } else if component.elementsEqual([UInt8(ascii: ".")]) || component.elementsEqual("..".utf8) {
                problems.append("\(shown) has a dot component")
            }
        }
        if bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) { problems.append("\(shown) has a control byte") }
        if !bytes.elementsEqual(path.precomposedStringWithCanonicalMapping.utf8) { problems.append("\(shown) is not NFC") }
        return problems
    }

    private static func isSeparator(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    // MARK: OCS and status.php

    static func ocsViolations(_ input: [UInt8]) -> [Violation] {
        var found: [Violation] = []
        func fail(_ check: String, _ detail: String) { found.append(Violation(check: "ocs: \(check)", detail: detail)) }

        if let data = OCSAnswer.data(input) {
            if let user = OCSAnswer.user(data), user.id.isEmpty { fail("user", "empty id") }
            if let share = OCSAnswer.share(data), share.token.isEmpty { fail("share", "empty token") }
            if let shares = OCSAnswer.linkShares(data), shares.contains(where: { $0.token.isEmpty }) { fail("shares", "empty token") }
            if let capabilities = OCSAnswer.capabilities(data) {
                if capabilities.bruteforceDelayMs < 0 { fail("capabilities", "negative brute-force delay") }
                let rules = capabilities.nameRules
                for name in ["", "..", ".", "a/b", "a\u{0}b", "x.part"] where rules.violation(in: name) == nil {
                    fail("capabilities", "the name rules accept \(name.debugDescription)")
                }
                // Whatever the lists hold, checking an ordinary name must work.
                _ = rules.violation(in: "IMG_0001.JPG")
            }
        }
        // status.php's reader has no invariant beyond its types; it runs for its own sake.
        _ = OCSAnswer.serverStatus(input)
        return found
    }

    // MARK: Error bodies

    /// Every field of an error body is optional text, so there is nothing to check beyond the
    /// reader finishing; it runs because it reads the same hostile bytes.
    static func errorBodyViolations(_ input: [UInt8]) -> [Violation] {
        _ = DAVErrorBody.parse(input)
        return []
    }
}
