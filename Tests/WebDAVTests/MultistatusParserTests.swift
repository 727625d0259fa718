import Foundation
import Testing
@testable import WebDAV

// MARK: Helpers

/// A file from `Tests/WebDAVTests/Fixtures` (copied into the test bundle as a folder).
func fixture(_ name: String) throws -> [UInt8] {
    let base = try #require(Bundle.module.resourceURL, "test bundle has no resources")
    let url = base.appendingPathComponent("Fixtures").appendingPathComponent(name)
    return try [UInt8](Data(contentsOf: url))
}

private let ncRequest = "http://127.0.0.1:8080/remote.php/dav/files/alice/Photos/"
private let ncRoot = "/remote.php/dav/files/alice/"

private func parse(_ bytes: [UInt8], requestURL: String = ncRequest, root: String = ncRoot,
                   limits: MultistatusLimits = .init()) throws -> [DAVResource] {
    try MultistatusParser.parse(bytes, requestURL: requestURL, root: root, limits: limits)
}

/// Feeds `bytes` in pieces of the given sizes (cycled), then finishes.
private func parseInChunks(_ bytes: [UInt8], sizes: [Int], requestURL: String = ncRequest,
                           root: String = ncRoot) throws -> [DAVResource] {
    let parser = MultistatusParser(requestURL: requestURL, root: root)
    var offset = 0
    var turn = 0
    while offset < bytes.count {
        let length = min(sizes[turn % sizes.count], bytes.count - offset)
        turn += 1
        try bytes[offset..<(offset + length)].withUnsafeBytes { try parser.feed($0) }
        offset += length
    }
    return try parser.finish()
}

/// The error `body` produces, or nil when it parses.
private func error(of body: () throws -> [DAVResource]) -> MultistatusError? {
    do {
        _ = try body()
        return nil
    } catch let error as MultistatusError {
        return error
    } catch {
        Issue.record("not a MultistatusError: \(error)")
        return .malformed("\(error)")
    }
}

private func feed(_ parser: MultistatusParser, _ text: String) throws {
    try Array(text.utf8).withUnsafeBytes { try parser.feed($0) }
}

private func xmlEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
}

/// A minimal Nextcloud-style multistatus with one file response per href.
private func listing(hrefs: [String]) -> [UInt8] {
    var xml = #"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">"#
    for href in hrefs {
        xml += "<d:response><d:href>\(xmlEscaped(href))</d:href><d:propstat><d:prop><d:resourcetype/>"
            + "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    }
    xml += "</d:multistatus>"
    return Array(xml.utf8)
}

/// A generated Nextcloud Depth-1 listing of `count` files below `Photos/`, with the 404
/// propstat Nextcloud sends without `Prefer: return=minimal`.
private func generatedListing(count: Int) -> [UInt8] {
    var xml = #"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">"#
    xml += "<d:response><d:href>/remote.php/dav/files/alice/Photos/</d:href><d:propstat><d:prop>"
        + "<d:resourcetype><d:collection/></d:resourcetype><d:getetag>&quot;root&quot;</d:getetag>"
        + "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    for i in 0..<count {
        let name = "file-" + String(repeating: "0", count: max(0, 5 - String(i).count)) + String(i) + ".jpg"
        xml += "<d:response><d:href>/remote.php/dav/files/alice/Photos/\(name)</d:href><d:propstat><d:prop>"
            + "<d:getlastmodified>Tue, 04 Nov 2025 10:11:12 GMT</d:getlastmodified>"
            + "<d:getcontentlength>\(1000 + i)</d:getcontentlength><d:resourcetype/>"
            + "<d:getetag>&quot;etag\(i)&quot;</d:getetag><d:getcontenttype>image/jpeg</d:getcontenttype>"
            + "<oc:fileid>\(10_000 + i)</oc:fileid><oc:permissions>RGDNVW</oc:permissions><oc:size>\(1000 + i)</oc:size>"
            + "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>"
            + "<d:propstat><d:prop><oc:checksums/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>"
            + "</d:response>"
    }
    xml += "</d:multistatus>"
    return Array(xml.utf8)
}

/// Deterministic chunk sizes for the split-anywhere tests (SplitMix64).
private struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Resident set size of this process, from /proc/self/statm.
private func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

private func date(_ seconds: Int) -> Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

// MARK: Recorded-shape fixtures

@Suite("MultistatusParser: server shapes")
struct MultistatusShapeTests {
    @Test func nextcloudDepthOneListing() throws {
        let resources = try parse(fixture("propfind-nextcloud-depth1.xml"))
        #expect(resources.map(\.path) == [
            "Photos", "Photos/a b.txt", "Photos/Caf\u{E9} \u{DC}n\u{EF}code", "Photos/\u{1F419} Octopus.JPG",
            "Photos/Tom & Jerry (draft).md",
        ])

        let folder = resources[0]
        #expect(folder.href == "/remote.php/dav/files/alice/Photos/")
        #expect(folder.isCollection)
        #expect(folder.etag == "6909d1a0c2b1e")
        #expect(folder.lastModified == date(1_762_251_072))
        #expect(folder.fileID == 123)
        #expect(folder.permissions == "RGDNVCK")
        #expect(folder.size == 1_234_567)
        #expect(folder.quotaUsed == 1_234_567)
        #expect(folder.quotaAvailable == -3)
        // getcontentlength/getcontenttype/checksums were in the 404 propstat.
        #expect(folder.contentLength == nil)
        #expect(folder.contentType == nil)
        #expect(folder.checksums == [])
        #expect(folder.failedProperties == [:])
        #expect(folder.status == nil)
        #expect(folder.trash == nil)

        let file = resources[1]
        #expect(file.href == "/remote.php/dav/files/alice/Photos/a%20b.txt")
        #expect(file.name == "a b.txt")
        #expect(!file.isCollection)
        #expect(file.contentLength == 11)
        #expect(file.contentType == "text/plain")
        #expect(file.etag == "1b2c3d4e5f60718293a4b5c6d7e8f901")
        #expect(file.lastModified == date(1_762_156_801))
        #expect(file.checksums == [
            "SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed", "MD5:5eb63bbbe01eeed093cb22bb8f5acdc3", "ADLER32:1a0b045d",
        ])
        #expect(file.quotaUsed == nil)
    }

    @Test func nfdHrefBecomesNFCPath() throws {
        let resources = try parse(fixture("propfind-nextcloud-depth1.xml"))
        let cafe = resources[2]
        // Swift's == ignores normalisation, so compare the scalars themselves.
        #expect(Array(cafe.path.unicodeScalars) == Array("Photos/Caf\u{E9} \u{DC}n\u{EF}code".unicodeScalars))
        #expect(cafe.href.contains("%cc%81"))
        #expect(cafe.isCollection)
        #expect(cafe.size == nil, "oc:size -1 means not computed")
        #expect(cafe.lastModified == date(1_740_873_599))

        let octopus = resources[3]
        #expect(Array(octopus.name.unicodeScalars) == Array("\u{1F419} Octopus.JPG".unicodeScalars))
        #expect(octopus.checksums == ["SHA1:0a4d55a8d778e5022fab701977c5d840bbc486d0", "MD5:d41d8cd98f00b204e9800998ecf8427e"])
        #expect(octopus.permissions == "SRGDNVW")
        #expect(octopus.lastModified == date(1_709_210_096))

        let tom = resources[4]
        #expect(tom.contentLength == 0)
        #expect(tom.size == 0)
        #expect(tom.lastModified == date(1_735_689_600))
    }

    @Test func rootWithoutTrailingSlashAndListingRoot() throws {
        let bytes = try fixture("propfind-nextcloud-depth1.xml")
        let withoutSlash = try parse(bytes, root: "/remote.php/dav/files/alice")
        #expect(withoutSlash.map(\.path) == (try parse(bytes)).map(\.path))
        let relativeToFolder = try parse(bytes, root: "/remote.php/dav/files/alice/Photos/")
        #expect(relativeToFolder.map(\.path) == [
            "", "a b.txt", "Caf\u{E9} \u{DC}n\u{EF}code", "\u{1F419} Octopus.JPG", "Tom & Jerry (draft).md",
        ])
        #expect(relativeToFolder[0].name == "")
    }

    @Test func apacheModDavUppercasePrefixesAndLiveProps() throws {
        let resources = try parse(fixture("propfind-apache-moddav.xml"),
                                  requestURL: "http://files.example.org/dav/media/", root: "/dav/")
        #expect(resources.map(\.path) == ["media", "media/IMG_0001.JPG", "media/r\u{E9}sum\u{E9} (1).pdf"])
        let folder = resources[0]
        #expect(folder.isCollection)
        #expect(folder.etag == "1000-642c1a9b0e3c0")
        #expect(folder.contentType == "httpd/unix-directory")
        #expect(folder.lastModified == date(1_762_251_072))
        let image = resources[1]
        #expect(image.href == "http://files.example.org/dav/media/IMG_0001.JPG")
        #expect(!image.isCollection)
        #expect(image.etag == "400000-640146e0c5a40", "weak W/ prefix and quotes stripped")
        #expect(image.contentLength == 4_194_304)
        #expect(image.lastModified == date(1_759_302_489))
        // No oc: properties on a generic server: unknown, not zero.
        #expect(image.size == nil)
        #expect(image.fileID == nil)
        #expect(image.permissions == nil)
        #expect(resources[2].lastModified == date(946_684_799))
        #expect(resources[2].contentLength == 52311)
    }

    @Test func defaultNamespaceWithoutPrefixes() throws {
        let resources = try parse(fixture("propfind-default-namespace.xml"))
        #expect(resources.map(\.path) == ["Docs", "Docs/notes.txt", "Docs/gone.txt"])
        #expect(resources[0].isCollection)
        #expect(resources[0].etag == "5f0e1d2c3b4a", "whitespace around the value is trimmed")
        #expect(resources[0].size == 4096)
        #expect(resources[0].lastModified == date(1_762_650_123))
        #expect(resources[1].contentLength == 42)
        #expect(resources[1].contentType == "text/plain; charset=utf-8", "CDATA is text")
        #expect(resources[1].fileID == 77)
        #expect(resources[1].permissions == "", "an empty permissions value is kept, not nil")
        #expect(resources[1].etag == "e1")
        #expect(resources[2].status == 404)
        #expect(resources[2].etag == nil)
        #expect(resources[1].status == nil)
    }

    @Test func trashListing() throws {
        let resources = try parse(fixture("trashbin-listing.xml"),
                                  requestURL: "http://127.0.0.1:8080/remote.php/dav/trashbin/alice/trash",
                                  root: "/remote.php/dav/trashbin/alice/trash/")
        #expect(resources.map(\.path) == ["", "a b.txt.d1762251072", "Old Album.d1762000000"])
        #expect(resources[0].trash == nil)
        #expect(resources[0].isCollection)
        let file = resources[1]
        #expect(file.etag == "1762251072", "trash ETags are unquoted integers, kept as they are")
        #expect(file.trash == TrashInfo(originalName: "a b.txt", originalLocation: "Photos/a b.txt",
                                        deletionTime: date(1_762_251_072)))
        #expect(file.permissions == "GD")
        #expect(file.size == 11)
        #expect(file.fileID == 124)
        let folder = resources[2]
        #expect(folder.isCollection)
        #expect(folder.trash?.originalLocation == "Photos/Old Album")
        #expect(folder.trash?.deletionTime == date(1_762_000_000))
        #expect(folder.contentLength == nil)
    }

    @Test func proppatchFailedProperties() throws {
        let resources = try parse(fixture("proppatch-403.xml"))
        #expect(resources.count == 1)
        #expect(resources[0].path == "Photos/a b.txt")
        #expect(resources[0].failedProperties == [
            "{DAV:}displayname": 403,
            "{http://nextcloud.org/ns}creation_time": 424,
            "{urn:example:photo}rating": 424,
        ])
        #expect(resources[0].status == nil)
    }

    @Test func searchResult() throws {
        let resources = try parse(fixture("search-result.xml"), requestURL: "http://127.0.0.1:8080/remote.php/dav/")
        #expect(resources.map(\.path) == ["Photos/2025/11/IMG_1234.HEIC", "Photos/2025/11"])
        #expect(resources[0].contentType == "image/heic")
        #expect(resources[0].fileID == 5001)
        #expect(resources[0].contentLength == 3_145_728)
        #expect(resources[1].isCollection)
        #expect(resources[1].contentType == "httpd/unix-directory")
        #expect(resources[1].name == "11")
        #expect(resources[1].etag == "690a1c2d3e4f6")
    }

    @Test func responseLevelStatusAndSkippedErrorElement() throws {
        // The d:error inside the response holds an href outside the root: it must be skipped.
        let resources = try parse(fixture("delete-423.xml"))
        #expect(resources.count == 1)
        #expect(resources[0].path == "Photos/locked.jpg")
        #expect(resources[0].status == 423)
    }

    @Test func onResponseStreamsAndFinishReturnsEmpty() throws {
        let bytes = try fixture("propfind-nextcloud-depth1.xml")
        var seen: [String] = []
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot) { seen.append($0.path) }
        try bytes.withUnsafeBytes { try parser.feed($0) }
        #expect(seen.count == 5)
        #expect(try parser.finish() == [])
        #expect(seen.first == "Photos")
    }

    @Test func entitiesAndCharacterReferencesInText() throws {
        let xml = #"""
        <d:multistatus xmlns:d="DAV:"><d:response><d:href>/remote.php/dav/files/alice/Tom%20&amp;%20Jerry&#x20;&#233;</d:href>
        <d:propstat><d:prop><d:getcontenttype>a&lt;b&gt;&apos;&quot;</d:getcontenttype></d:prop>
        <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>
        """#
        let resources = try parse(Array(xml.utf8))
        #expect(resources.first?.path == "Tom & Jerry \u{E9}")
        #expect(resources.first?.contentType == "a<b>'\"")
    }

    @Test func latin1DocumentIsConverted() throws {
        var bytes = Array(#"<?xml version="1.0" encoding="ISO-8859-1"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/remote.php/dav/files/alice/x</d:href><d:propstat><d:prop><d:getcontenttype>caf"#.utf8)
        bytes.append(0xE9)
        bytes += Array("</d:getcontenttype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>".utf8)
        #expect(try parse(bytes).first?.contentType == "caf\u{E9}")
    }
}

// MARK: Streaming

@Suite("MultistatusParser: chunk boundaries")
struct MultistatusChunkTests {
    static let fixtures = [
        "propfind-nextcloud-depth1.xml", "propfind-apache-moddav.xml", "propfind-default-namespace.xml",
        "trashbin-listing.xml", "proppatch-403.xml",
    ]

    @Test(arguments: fixtures)
    func oneByteAtATime(name: String) throws {
        let bytes = try fixture(name)
        let requestURL = name.contains("apache") ? "http://files.example.org/dav/media/" : ncRequest
        let root = name.contains("apache") ? "/dav/" : name.contains("trash") ? "/remote.php/dav/trashbin/alice/trash/" : ncRoot
        let whole = try parse(bytes, requestURL: requestURL, root: root)
        #expect(!whole.isEmpty)
        #expect(try parseInChunks(bytes, sizes: [1], requestURL: requestURL, root: root) == whole)
    }

    @Test(arguments: [1, 2, 3, 42, 2024])
    func randomChunkSizes(seed: UInt64) throws {
        let bytes = try fixture("propfind-nextcloud-depth1.xml")
        var random = SeededRandom(state: seed)
        let sizes = (0..<64).map { _ in Int.random(in: 1...97, using: &random) }
        #expect(try parseInChunks(bytes, sizes: sizes) == (try parse(bytes)))
    }

    @Test func truncatedDocumentIsMalformed() throws {
        let bytes = try fixture("propfind-nextcloud-depth1.xml")
        for cut in [10, bytes.count / 2, bytes.count - 20] {
            let failure = error { try parse(Array(bytes[..<cut])) }
            guard case .malformed(let message)? = failure else {
                Issue.record("cut at \(cut): expected .malformed, got \(String(describing: failure))")
                continue
            }
            #expect(message.contains("line"))
        }
    }

    @Test func errorIsStickyAndFeedStopsEarly() throws {
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot)
        #expect(throws: MultistatusError.notMultistatus) { try feed(parser, #"<d:error xmlns:d="DAV:">"#) }
        #expect(throws: MultistatusError.notMultistatus) { try feed(parser, "<more/>") }
        #expect(throws: MultistatusError.notMultistatus) { try parser.finish() }
    }
}

// MARK: Hostile input

@Suite("MultistatusParser: hostile input")
struct MultistatusHostileTests {
    @Test(arguments: [
        "hostile-billion-laughs.xml", "hostile-xxe-file.xml", "hostile-xxe-http.xml", "hostile-doctype-external.xml",
    ])
    func doctypeIsRefused(name: String) throws {
        let bytes = try fixture(name)
        var delivered: [DAVResource] = []
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot) { delivered.append($0) }
        #expect(throws: MultistatusError.doctypeForbidden) {
            try bytes.withUnsafeBytes { try parser.feed($0) }
            _ = try parser.finish()
        }
        #expect(delivered.isEmpty, "nothing from behind a DOCTYPE reaches the caller")
        // Split anywhere, the verdict is the same.
        #expect(error { try parseInChunks(bytes, sizes: [1, 7, 3]) } == .doctypeForbidden)
    }

    @Test func plainDoctype() {
        let xml = #"<?xml version="1.0"?><!DOCTYPE multistatus><d:multistatus xmlns:d="DAV:"/>"#
        #expect(error { try parse(Array(xml.utf8)) } == .doctypeForbidden)
    }

    @Test func undeclaredEntityWithoutDoctypeIsMalformed() {
        let xml = #"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/remote.php/dav/files/alice/&xxe;</d:href></d:response></d:multistatus>"#
        guard case .malformed(let message)? = error(of: { try parse(Array(xml.utf8)) }) else {
            Issue.record("expected .malformed")
            return
        }
        #expect(message.contains("xxe"))
        #expect(!message.contains("root:"))
    }

    @Test(arguments: [
        // (href, expected error: "invalid" or "outside")
        ("/remote.php/dav/files/alice/../bob/secret.txt", "invalid"),
        ("/remote.php/dav/files/alice/%2e%2e/bob/", "invalid"),
        ("/remote.php/dav/files/alice/%2E%2E/bob/", "invalid"),
        ("/remote.php/dav/files/alice/Photos/./x", "invalid"),
        ("/remote.php/dav/files/alice/Photos/%2e", "invalid"),
        ("/remote.php/dav/files/alice/a%00b", "invalid"),
        ("/remote.php/dav/files/alice/a%0Ab", "invalid"),
        ("/remote.php/dav/files/alice/a%1fb", "invalid"),
        ("/remote.php/dav/files/alice/a%7Fb", "invalid"),
        ("/remote.php/dav/files/alice/a\tb", "invalid"),
        ("/remote.php/dav/files/alice/%ff.txt", "invalid"),
        ("/remote.php/dav/files/alice/%C3", "invalid"),
        ("/remote.php/dav/files/alice/%ED%A0%80", "invalid"),
        ("/remote.php/dav/files/alice/a%2Fb", "invalid"),
        ("/remote.php/dav/files/alice//x", "invalid"),
        ("/remote.php/dav/files/alice/a%zz", "invalid"),
        ("/remote.php/dav/files/alice/a%4", "invalid"),
        ("/remote.php/dav/files/alice/x?download=1", "invalid"),
        ("/remote.php/dav/files/alice/x#frag", "invalid"),
        ("remote.php/dav/files/alice/x", "invalid"),
        ("", "invalid"),
        ("/remote.php/dav/files/bob/x", "outside"),
        ("/remote.php/dav/files/alicex/x", "outside"),
        ("/remote.php/dav/files/", "outside"),
        ("/", "outside"),
        ("http://evil.example.org/remote.php/dav/files/alice/x", "outside"),
        ("http://127.0.0.1:8081/remote.php/dav/files/alice/x", "outside"),
        ("https://127.0.0.1:8080/remote.php/dav/files/alice/x", "outside"),
        ("//evil.example.org/remote.php/dav/files/alice/x", "outside"),
        ("http://127.0.0.1.evil.org:8080/remote.php/dav/files/alice/x", "outside"),
    ])
    func hostileHref(href: String, expected: String) {
        let failure = error { try parse(listing(hrefs: [href])) }
        let trimmed = href.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(failure == (expected == "invalid" ? .invalidHref(trimmed) : .hrefOutsideRoot(trimmed)))
    }

    @Test(arguments: [
        ("http://127.0.0.1:8080/remote.php/dav/files/alice/x", "x"),
        ("HTTP://127.0.0.1:8080/remote.php/dav/files/alice/x/", "x"),
        ("http://alice@127.0.0.1:8080/remote.php/dav/files/alice/y", "y"),
        ("//127.0.0.1:8080/remote.php/dav/files/alice/z", "z"),
        ("/remote.php/dav/files/alice", ""),
        ("/remote.php/dav/files/alice/", ""),
        ("/remote.php/dav/files/alice/%c3%a9%C3%A9", "\u{E9}\u{E9}"),
        ("/remote.php/dav/files/alice/a%2520b", "a%20b"),
        ("/remote.php/dav/files/alice/...", "..."),
        ("  /remote.php/dav/files/alice/padded  ", "padded"),
    ])
    func acceptedHref(href: String, path: String) throws {
        #expect(try parse(listing(hrefs: [href])).first?.path == path)
    }

    @Test func defaultPortsAreEquivalent() throws {
        let hrefs = ["http://cloud.example.org:80/dav/a", "http://Cloud.Example.org/dav/b"]
        let resources = try parse(listing(hrefs: hrefs), requestURL: "http://cloud.example.org/dav/", root: "/dav")
        #expect(resources.map(\.path) == ["a", "b"])
        let tls = try parse(listing(hrefs: ["https://cloud.example.org:443/dav/c"]),
                            requestURL: "https://cloud.example.org/dav/", root: "/dav/")
        #expect(tls.map(\.path) == ["c"])
    }

    @Test func notMultistatus() {
        for xml in [
            #"<d:error xmlns:d="DAV:"><s:message xmlns:s="http://sabredav.org/ns">x</s:message></d:error>"#,
            "<multistatus><response/></multistatus>",
            #"<x:multistatus xmlns:x="urn:not-dav"/>"#,
            "<html><body>Login</body></html>",
        ] {
            #expect(error { try parse(Array(xml.utf8)) } == .notMultistatus, "\(xml)")
        }
    }

    @Test func malformedStructure() {
        let cases = [
            "",
            "{\"ocs\": {}}",
            #"<d:multistatus xmlns:d="DAV:"><d:response></d:multistatus>"#,
            #"<d:multistatus><d:response/></d:multistatus>"#,
            #"<d:multistatus xmlns:d="DAV:"><d:response><d:propstat/></d:response></d:multistatus>"#,
            #"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/remote.php/dav/files/alice/x</d:href><d:propstat><d:prop/></d:propstat></d:response></d:multistatus>"#,
            #"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/remote.php/dav/files/alice/x</d:href><d:status>OK</d:status></d:response></d:multistatus>"#,
            #"<d:multistatus xmlns:d="DAV:"></d:multistatus><d:multistatus xmlns:d="DAV:"/>"#,
        ]
        for xml in cases {
            guard case .malformed? = error(of: { try parse(Array(xml.utf8)) }) else {
                Issue.record("expected .malformed for \(xml)")
                continue
            }
        }
    }
}

// MARK: Limits

@Suite("MultistatusParser: limits")
struct MultistatusLimitTests {
    @Test func longListingOverMaxBytesStopsEarly() throws {
        let bytes = generatedListing(count: 10_000)
        var delivered = 0
        let limits = MultistatusLimits(maxBytes: 64 << 10)
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot, limits: limits) { _ in delivered += 1 }
        var fed = 0
        var failure: MultistatusError?
        while fed < bytes.count, failure == nil {
            let piece = bytes[fed..<min(fed + 4096, bytes.count)]
            do { try piece.withUnsafeBytes { try parser.feed($0) } } catch { failure = error as? MultistatusError }
            fed += piece.count
        }
        #expect(failure == .tooLarge(limit: 64 << 10))
        #expect(fed <= (64 << 10) + 4096)
        #expect(delivered > 0 && delivered < 300)
        #expect(throws: MultistatusError.tooLarge(limit: 64 << 10)) { try parser.finish() }
    }

    @Test func oneShotOverMaxBytes() {
        let bytes = generatedListing(count: 100)
        #expect(error { try parse(bytes, limits: MultistatusLimits(maxBytes: bytes.count - 1)) } == .tooLarge(limit: bytes.count - 1))
        #expect(error { try parse(bytes, limits: MultistatusLimits(maxBytes: bytes.count)) } == nil)
    }

    /// 100 MB of href text, streamed: refused after the text limit, long before the end.
    @Test func hugeHrefStopsAtTextLimit() throws {
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot)
        try feed(parser, #"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/"#)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 64 << 10)
        var fed = 0
        var failure: MultistatusError?
        while fed < 100_000_000, failure == nil {
            do { try chunk.withUnsafeBytes { try parser.feed($0) } } catch { failure = error as? MultistatusError }
            fed += chunk.count
        }
        #expect(failure == .textTooLong)
        #expect(fed <= 3 * chunk.count)
    }

    /// 100 MB of text in a property nobody reads, streamed in 1 MiB pieces: parsed without
    /// buffering it (resident memory grows far less than the body).
    @Test func hugeSkippedTextIsStreamedNotBuffered() throws {
        let parser = MultistatusParser(requestURL: ncRequest, root: ncRoot)
        try feed(parser, #"<d:multistatus xmlns:d="DAV:" xmlns:x="urn:x"><d:response><d:href>/remote.php/dav/files/alice/big</d:href><d:propstat><d:prop><x:blob>"#)
        let chunk = [UInt8](repeating: UInt8(ascii: "b"), count: 1 << 20)
        let before = residentBytes()
        var peak = before
        for _ in 0..<100 {
            try chunk.withUnsafeBytes { try parser.feed($0) }
            peak = max(peak, residentBytes())
        }
        try feed(parser, "</x:blob><d:getetag>\"e\"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>")
        let resources = try parser.finish()
        #expect(resources.map(\.path) == ["big"])
        #expect(resources.first?.etag == "e")
        #expect(peak - before < 40 << 20, "resident memory grew by \((peak - before) >> 20) MiB for a 100 MiB body")
    }

    @Test func textLimitBoundary() throws {
        let limits = MultistatusLimits(maxTextLength: 40)
        let exact = "/remote.php/dav/files/alice/" + String(repeating: "x", count: 12)  // 40 bytes
        #expect(exact.utf8.count == 40)
        #expect(try parse(listing(hrefs: [exact]), limits: limits).first?.path == String(repeating: "x", count: 12))
        #expect(error { try parse(listing(hrefs: [exact + "y"]), limits: limits) } == .textTooLong)
    }

    @Test func tooManyResponses() throws {
        let hrefs = (0..<6).map { "/remote.php/dav/files/alice/f\($0)" }
        let limits = MultistatusLimits(maxResponses: 5)
        #expect(error { try parse(listing(hrefs: hrefs), limits: limits) } == .tooManyResponses)
        #expect(try parse(listing(hrefs: Array(hrefs.prefix(5))), limits: limits).count == 5)
    }

    @Test func tooDeep() throws {
        func nested(_ levels: Int) -> [UInt8] {
            // multistatus/response/propstat/prop = 4 levels, then `levels` unknown elements.
            let open = String(repeating: "<x:n>", count: levels)
            let close = String(repeating: "</x:n>", count: levels)
            let xml = #"<d:multistatus xmlns:d="DAV:" xmlns:x="urn:x"><d:response><d:href>/remote.php/dav/files/alice/a</d:href><d:propstat><d:prop>"#
                + open + close + "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"
            return Array(xml.utf8)
        }
        #expect(try parse(nested(60)).count == 1)
        #expect(error { try parse(nested(61)) } == .tooDeep)
        #expect(error { try parse(nested(300)) } == .tooDeep)
        #expect(error { try parse(nested(10), limits: MultistatusLimits(maxDepth: 8)) } == .tooDeep)
    }
}

// MARK: Scale

@Suite("MultistatusParser: scale")
struct MultistatusScaleTests {
    @Test func tenThousandEntries() throws {
        let bytes = generatedListing(count: 10_000)
        let clock = ContinuousClock()
        var resources: [DAVResource] = []
        let elapsed = try clock.measure { resources = try parse(bytes) }
        print("MultistatusParser: 10,000 entries (\(bytes.count) bytes) parsed in \(elapsed)")
        #expect(resources.count == 10_001)
        #expect(resources[0].path == "Photos")
        #expect(resources[0].isCollection)
        #expect(resources[43].name == "file-00042.jpg")
        #expect(resources[43].size == 1042)
        #expect(resources[43].contentLength == 1042)
        #expect(resources[43].fileID == 10_042)
        #expect(resources[43].etag == "etag42")
        #expect(resources[10_000].name == "file-09999.jpg")
        #expect(resources[10_000].lastModified == date(1_762_251_072))
        #expect(resources.dropFirst().allSatisfy { !$0.isCollection && $0.contentType == "image/jpeg" })
        #expect(Set(resources.map(\.path)).count == 10_001)
        // Generous for an unoptimised debug build on a loaded 2-core machine; release is ~10x faster.
        #expect(elapsed < .seconds(3))
    }
}

// MARK: Values

@Suite("MultistatusValues")
struct MultistatusValueTests {
    private func bytes(_ text: String) -> ArraySlice<UInt8> { Array(text.utf8)[...] }

    @Test func httpDates() {
        #expect(MultistatusValues.httpDate(bytes("Tue, 04 Nov 2025 10:11:12 GMT")) == date(1_762_251_072))
        #expect(MultistatusValues.httpDate(bytes("04 Nov 2025 10:11:12 GMT")) == date(1_762_251_072))
        #expect(MultistatusValues.httpDate(bytes("Thu, 01 Jan 1970 00:00:00 GMT")) == date(0))
        #expect(MultistatusValues.httpDate(bytes("Thu, 29 Feb 2024 12:34:56 GMT")) == date(1_709_210_096))
        #expect(MultistatusValues.httpDate(bytes("Tue, 4 nov 2025 10:11:12 UTC")) == date(1_762_251_072))
        #expect(MultistatusValues.httpDate(bytes("Tue, 04 Nov 2025 10:11:12 +0200")) == nil)
        #expect(MultistatusValues.httpDate(bytes("Tue, 04 Foo 2025 10:11:12 GMT")) == nil)
        #expect(MultistatusValues.httpDate(bytes("Tue, 04 Nov 2025 24:11:12 GMT")) == nil)
        #expect(MultistatusValues.httpDate(bytes("2025-11-04T10:11:12Z")) == nil)
        #expect(MultistatusValues.httpDate(bytes("")) == nil)
    }

    @Test func etags() {
        #expect(MultistatusValues.etag(bytes("\"abc\"")) == "abc")
        #expect(MultistatusValues.etag(bytes("W/\"abc\"")) == "abc")
        #expect(MultistatusValues.etag(bytes("1762251072")) == "1762251072")
        #expect(MultistatusValues.etag(bytes("\"")) == "\"")
        #expect(MultistatusValues.etag(bytes("\"\"")) == nil)
    }

    @Test func statusLines() {
        #expect(MultistatusValues.statusCode(bytes("HTTP/1.1 404 Not Found")) == 404)
        #expect(MultistatusValues.statusCode(bytes("HTTP/1.1 200 OK")) == 200)
        #expect(MultistatusValues.statusCode(bytes("HTTP/2 424")) == 424)
        #expect(MultistatusValues.statusCode(bytes("HTTP/1.1 2000 OK")) == nil)
        #expect(MultistatusValues.statusCode(bytes("200 OK")) == nil)
    }

    @Test func integers() {
        #expect(MultistatusValues.int64(bytes("9223372036854775807")) == Int64.max)
        #expect(MultistatusValues.int64(bytes("-9223372036854775808")) == Int64.min)
        #expect(MultistatusValues.int64(bytes("9223372036854775808")) == nil)
        #expect(MultistatusValues.int64(bytes("12a")) == nil)
        #expect(MultistatusValues.int64(bytes("-")) == nil)
    }
}

/// ncfs's dead property as Nextcloud 32.0.1 returns it (captured from a real server: the
/// namespace declared on the element itself, a 404 propstat where the property is missing).
@Suite struct PosixPropertyParsingTests {
    @Test func nextcloudDeadPropertyPerEntry() throws {
        let body = """
            <?xml version="1.0"?>
            <d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns"><d:response><d:href>/remote.php/dav/files/alice/Photos/</d:href><d:propstat><d:prop><x1:posix xmlns:x1="https://ncfs.invalid/ns"/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response><d:response><d:href>/remote.php/dav/files/alice/Photos/a</d:href><d:propstat><d:prop><x1:posix xmlns:x1="https://ncfs.invalid/ns">100600 1234 5678</x1:posix></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/remote.php/dav/files/alice/Photos/lnk</d:href><d:propstat><d:prop><x1:posix xmlns:x1="https://ncfs.invalid/ns">120777 0 0</x1:posix></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/remote.php/dav/files/alice/Photos/other</d:href><d:propstat><d:prop><x2:posix xmlns:x2="urn:someone-else">100600 1 1</x2:posix></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>
            """
        let resources = try MultistatusParser.parse(Array(body.utf8), requestURL: "http://127.0.0.1:8080/remote.php/dav/files/alice/Photos/",
                                                    root: "/remote.php/dav/files/alice/")
        #expect(resources.map(\.posix) == [nil, "100600 1234 5678", "120777 0 0", nil])
        #expect(PropertySet.listing.propfindBody.contains("<ncfs:posix/>") && PropertySet.listing.propfindBody.contains(#"xmlns:ncfs="https://ncfs.invalid/ns""#))
        #expect(!PropertySet.serverListing.propElements.contains("ncfs"), "SEARCH selects only the server's own properties")
    }
}
