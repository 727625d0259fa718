import Testing
@testable import WebDAV

@Suite("DAVErrorBody")
struct DAVErrorBodyTests {
    /// Answers recorded on a real Nextcloud 32.0.1 (see the README's "Tested against").
    @Test func nextcloud32RecordedAnswers() throws {
        let inm = try #require(DAVErrorBody.parse(fixture("nextcloud32-chunked-move-if-none-match-412.xml")))
        #expect(inm.header == "If-None-Match" && inm.exception == "Sabre\\DAV\\Exception\\PreconditionFailed")
        let overwrite = try #require(DAVErrorBody.parse(fixture("nextcloud32-chunked-move-overwrite-f-412.xml")))
        #expect(overwrite.header == "Overwrite")
        let race = try #require(DAVErrorBody.parse(fixture("nextcloud32-mkcol-race-403.xml")))
        #expect(race.exception == "Sabre\\DAV\\Exception\\Forbidden" && race.message?.hasPrefix("Could not create directory") == true)
        let locked = try #require(DAVErrorBody.parse(fixture("nextcloud32-mkcol-race-423.xml")))
        #expect(locked.exception == "OCA\\DAV\\Connector\\Sabre\\Exception\\FileLocked")
        let headers = try String(decoding: fixture("nextcloud32-proppatch-minimal-204.headers"), as: UTF8.self)
        #expect(headers.hasPrefix("HTTP/1.1 204 No Content") && headers.contains("Vary: Brief,Prefer"))
    }

    @Test func sabreNotFound() throws {
        let body = try #require(DAVErrorBody.parse(fixture("error-notfound.xml")))
        #expect(body == DAVErrorBody(exception: "Sabre\\DAV\\Exception\\NotFound",
                                     message: "File with name /x could not be located"))
    }

    @Test func preconditionFailedNamesTheHeader() throws {
        let body = try #require(DAVErrorBody.parse(fixture("error-precondition-failed.xml")))
        #expect(body.exception == "Sabre\\DAV\\Exception\\PreconditionFailed")
        #expect(body.header == "If-Match")
        #expect(body.message == "An If-Match header was specified, but none of the specified ETags matched.")
        #expect(body.retry == nil)
    }

    /// Nextcloud's `o:` children sit in namespace URI `o:` (reference §9.1); found by local name.
    @Test func invalidPathInTheQuirkNamespace() throws {
        let body = try #require(DAVErrorBody.parse(fixture("error-invalidpath.xml")))
        #expect(body.exception == "OCA\\DAV\\Connector\\Sabre\\Exception\\InvalidPath")
        #expect(body.retry == false)
        #expect(body.reason == "\"?\" is not allowed inside a file or folder name.")
        #expect(body.message == "Invalid path")
        #expect(body.header == nil)
    }

    @Test func forbiddenWithDebugElementsAndOwncloudNamespace() throws {
        let body = try #require(DAVErrorBody.parse(fixture("error-forbidden-debug.xml")))
        #expect(body == DAVErrorBody(exception: "OCA\\DAV\\Connector\\Sabre\\Exception\\Forbidden",
                                     message: "Could not upload file: file is locked",
                                     reason: "Temporarily locked", retry: true))
    }

    @Test func tooManyRequestsHint() throws {
        let body = try #require(DAVErrorBody.parse(fixture("error-toomanyrequests.xml")))
        #expect(body.hint == "too many requests")
        #expect(body.message == "")
        #expect(body.exception == "OCA\\DAV\\Connector\\Sabre\\Exception\\TooManyRequests")
    }

    @Test func htmlPageIsNotAnErrorBody() throws {
        #expect(DAVErrorBody.parse(try fixture("error-page.html")) == nil)
        #expect(DAVErrorBody.parse(Array("<html><body><h1>502 Bad Gateway</h1></body></html>".utf8)) == nil)
    }

    @Test(arguments: [
        "",
        "Internal Server Error",
        #"{"ocs":{"meta":{"status":"failure","statuscode":997}}}"#,
        #"<d:error xmlns:d="DAV:"><s:message xmlns:s="http://sabredav.org/ns">cut"#,
        #"<d:multistatus xmlns:d="DAV:"/>"#,
        #"<error xmlns="urn:other"><message>x</message></error>"#,
        #"<?xml version="1.0"?><!DOCTYPE d:error [<!ENTITY x SYSTEM "file:///etc/passwd">]><d:error xmlns:d="DAV:"><s:message xmlns:s="http://sabredav.org/ns">&x;</s:message></d:error>"#,
    ])
    func notAnErrorBody(text: String) {
        #expect(DAVErrorBody.parse(Array(text.utf8)) == nil)
    }

    @Test func elementsMatchedByNamespaceNotPrefix() throws {
        let xml = #"""
        <D:error xmlns:D="DAV:" xmlns:sabre="http://sabredav.org/ns" xmlns:s="urn:not-sabre">
          <s:exception>wrong namespace</s:exception>
          <sabre:exception>Sabre\DAV\Exception\Conflict</sabre:exception>
          <D:lock-token-submitted><D:href>/x</D:href></D:lock-token-submitted>
        </D:error>
        """#
        let body = try #require(DAVErrorBody.parse(Array(xml.utf8)))
        #expect(body == DAVErrorBody(exception: "Sabre\\DAV\\Exception\\Conflict"))
    }

    @Test func oversizedBodyIsRefused() {
        let head = Array(#"<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns"><s:message>"#.utf8)
        let tail = Array("</s:message></d:error>".utf8)
        let fits = head + [UInt8](repeating: UInt8(ascii: "m"), count: 1000) + tail
        #expect(DAVErrorBody.parse(fits)?.message?.count == 1000)
        let tooBig = head + [UInt8](repeating: UInt8(ascii: "m"), count: 1 << 20) + tail
        #expect(DAVErrorBody.parse(tooBig) == nil)
    }

    @Test func retryValues() {
        func retry(_ value: String) -> Bool?? {
            let xml = #"<d:error xmlns:d="DAV:" xmlns:o="http://owncloud.org/ns"><o:retry>"# + value + "</o:retry></d:error>"
            return DAVErrorBody.parse(Array(xml.utf8)).map(\.retry)
        }
        #expect(retry("true") == .some(true))
        #expect(retry(" false ") == .some(false))
        #expect(retry("maybe") == .some(nil))
    }
}
