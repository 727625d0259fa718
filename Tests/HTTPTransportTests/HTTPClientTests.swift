import Foundation
import Testing
import HTTPTransport
import TestSupport

/// The transport against the real test server process, with faults injected by the server.
@Suite(.serialized) struct HTTPClientTests {
    let server: TestServer

    init() throws { server = try TestServer() }

    func client(retry: RetryPolicy = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(10), maxDelay: .milliseconds(50)),
                password: String? = nil, stall: Duration = .seconds(30)) -> HTTPClient {
        var config = HTTPClientConfiguration(credentials: Credentials(user: server.user, password: password ?? server.password))
        config.retry = retry
        config.stallTimeout = stall
        return HTTPClient(configuration: config)
    }

    var rootURL: String { server.baseURL }

    @Test func reusesIdleConnection() throws {
        let http = client()
        let first = try http.perform(HTTPRequest(method: "GET", url: "\(server.origin)/status.php"))
        let second = try http.perform(HTTPRequest(method: "GET", url: "\(server.origin)/status.php"))
        #expect(first.status == 200 && second.status == 200)
        #expect(first.openedConnection)
        #expect(!second.openedConnection, "an idle kept-alive connection must be reused")
    }

    @Test func retriesServiceUnavailableThenSucceeds() throws {
        try server.fault(method: "GET", pathContains: "status.php", status: 503, count: 2)
        let mark = server.mark()
        let response = try client().perform(HTTPRequest(method: "GET", url: "\(server.origin)/status.php"))
        #expect(response.status == 200)
        #expect(response.attempts == 3)
        #expect(server.requests(since: mark).map(\.status) == [503, 503, 200])
    }

    @Test func givesUpAfterTheAttemptBudget() throws {
        try server.fault(method: "GET", pathContains: "status.php", status: 503, count: 10)
        let response = try client().perform(HTTPRequest(method: "GET", url: "\(server.origin)/status.php"))
        #expect(response.status == 503)
        #expect(response.attempts == 4)
        try server.control("clear", [:])
    }

    @Test func neverRetriesUnauthorized() throws {
        let mark = server.mark()
        let response = try client(password: "wrong-password").perform(HTTPRequest(method: "PROPFIND", url: rootURL, headers: ["Depth": "0"]))
        #expect(response.status == 401)
        #expect(response.attempts == 1)
        #expect(server.requests(since: mark).count == 1, "a 401 must reach the server exactly once")
    }

    @Test func retriesConnectionResetForIdempotentRequests() throws {
        try server.fault(method: "GET", pathContains: "status.php", action: "reset", count: 1)
        let response = try client().perform(HTTPRequest(method: "GET", url: "\(server.origin)/status.php"))
        #expect(response.status == 200)
        #expect(response.attempts == 2)
    }

    @Test func doesNotRetryResetMoveButRetriesLockedMove() throws {
        let http = client()
        _ = try http.perform(HTTPRequest(method: "PUT", url: rootURL + "a.txt", body: .text("a")))
        try server.fault(method: "MOVE", pathContains: "a.txt", action: "reset", count: 1)
        var headers = HTTPHeaders()
        headers.set("Destination", rootURL + "b.txt")
        let move = HTTPRequest(method: "MOVE", url: rootURL + "a.txt", headers: headers)
        // A fresh client: on a reused connection libcurl itself resends a request whose
        // connection died before any answer (it takes that for a stale keep-alive).
        let mark = server.requests(since: 0).count
        #expect(throws: HTTPError.self) { try client().perform(move) }
        // The server logs the reset request with status 0; a resend would add a second line.
        #expect(server.requests(since: mark).map(\.status) == [0], "the reset MOVE must not be sent again")
        // Also on a client whose idle kept-alive connection libcurl would otherwise reuse.
        try server.fault(method: "MOVE", pathContains: "a.txt", action: "reset", count: 1)
        let again = server.requests(since: 0).count
        #expect(throws: HTTPError.self) { try http.perform(move) }
        #expect(server.requests(since: again).map(\.status) == [0], "the reset MOVE must not be resent on a fresh connection")

        // 423 means "not applied": safe to send a MOVE again.
        try server.fault(method: "MOVE", pathContains: "a.txt", status: 423, count: 1)
        let response = try http.perform(move)
        #expect(response.status == 201)
        #expect(response.attempts == 2)
    }

    @Test func stalledTransferTimesOutPromptly() throws {
        let http = client(retry: .noRetries, stall: .seconds(2))
        let data = [UInt8](repeating: 7, count: 1 << 20)
        _ = try http.perform(HTTPRequest(method: "PUT", url: rootURL + "big.bin", body: .bytes(data)))
        try server.fault(method: "GET", pathContains: "big.bin", action: "stall", count: 1, afterBytes: 1000)
        let started = ContinuousClock.now
        #expect(throws: HTTPError.self) {
            try http.perform(HTTPRequest(method: "GET", url: rootURL + "big.bin"))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func streamsFileBodiesBothWays() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-http-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var bytes = [UInt8](repeating: 0, count: 24 << 20)
        for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = UInt8(truncatingIfNeeded: i / 4096) }
        let source = dir.appendingPathComponent("src.bin")
        try Data(bytes).write(to: source)

        let http = client()
        // Only the middle 20 MiB of the file: offset/length must be honoured.
        let put = try http.perform(HTTPRequest(method: "PUT", url: rootURL + "up.bin",
                                               body: .file(path: source.path, offset: 2 << 20, length: 20 << 20)))
        #expect(put.status == 201)
        let stored = try Data(contentsOf: server.filesDir.appendingPathComponent("up.bin"))
        #expect(stored == Data(bytes[(2 << 20)..<(22 << 20)]))

        let target = dir.appendingPathComponent("down.bin")
        let get = try http.perform(HTTPRequest(method: "GET", url: rootURL + "up.bin", acceptCompressed: false), sink: .file(path: target.path))
        #expect(get.status == 200)
        #expect(try Data(contentsOf: target) == stored)
    }

    @Test func errorBodiesNeverReachAFileSink() throws {
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-missing-\(UUID().uuidString.prefix(6))")
        let response = try client().perform(HTTPRequest(method: "GET", url: rootURL + "missing.bin"), sink: .file(path: target.path))
        #expect(response.status == 404)
        #expect(!FileManager.default.fileExists(atPath: target.path))
        #expect(response.bodyText.contains("NotFound"), "the error body is kept for the caller to parse")
    }

    @Test func memoryLimitIsEnforced() throws {
        let http = client()
        _ = try http.perform(HTTPRequest(method: "PUT", url: rootURL + "k.bin", body: .bytes([UInt8](repeating: 1, count: 4096))))
        #expect(throws: HTTPError.responseTooLarge(limit: 100)) {
            try http.perform(HTTPRequest(method: "GET", url: rootURL + "k.bin"), sink: .memory(limit: 100))
        }
    }

    @Test func streamSinkErrorsPropagate() throws {
        struct Stop: Error {}
        let http = client()
        _ = try http.perform(HTTPRequest(method: "PUT", url: rootURL + "s.bin", body: .bytes([UInt8](repeating: 2, count: 100_000))))
        #expect(throws: Stop.self) {
            try http.perform(HTTPRequest(method: "GET", url: rootURL + "s.bin"), sink: .stream({ _ in throw Stop() }))
        }
    }

    @Test func unreachableServerFailsWithTransportError() throws {
        let http = client(retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1)))
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        #expect(throws: HTTPError.self) { try http.perform(HTTPRequest(method: "GET", url: "http://127.0.0.1:9/")) }
    }
}

@Suite struct RedactionTests {
    @Test func removesSecretsFromLoggedURLs() {
        #expect(redactedForLog("https://h/public.php/dav/files/AbCdEf123/x.jpg") == "https://h/public.php/dav/files/<token>/x.jpg")
        #expect(redactedForLog("https://u:p@h/remote.php/dav/files/a/") == "https://h/remote.php/dav/files/a/")
        #expect(redactedForLog("https://h/ocs/v2.php/x?token=abc") == "https://h/ocs/v2.php/x?…")
        #expect(redactedForLog("https://h/index.php/s/Tok3n") == "https://h/index.php/s/<token>")
        #expect(Credentials(user: "alice", password: "hunter2").description == "alice:<redacted>")
        #expect(!"\(Credentials(user: "alice", password: "hunter2"))".contains("hunter2"))
    }
}
