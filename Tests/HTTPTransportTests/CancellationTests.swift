import Foundation
import Testing
import HTTPTransport
import TestSupport

/// `Cancellation`: a cancel from another thread ends a stalled exchange, its deadline bounds an
/// exchange across retries, and transfers into a local file are not bound by the deadline.
@Suite(.serialized) struct CancellationTests {
    let server: TestServer

    init() throws { server = try TestServer() }

    /// Patient settings: without a cancellation a stalled PROPFIND would wait 30 s, then retry.
    func client() -> HTTPClient {
        var config = HTTPClientConfiguration(credentials: server.credentials)
        config.retry = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(10), maxDelay: .milliseconds(50), budget: .seconds(120))
        return HTTPClient(configuration: config)
    }

    var propfind: HTTPRequest { HTTPRequest(method: "PROPFIND", url: server.baseURL, headers: ["Depth": "0"]) }

    @Test func cancelFromAnotherThreadEndsAStalledRequest() throws {
        try server.fault(method: "PROPFIND", action: "stall", count: 5, seconds: 60)
        let cancellation = Cancellation()
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { cancellation.cancel() }
        let started = ContinuousClock.now
        let http = client()
        #expect(throws: HTTPError.cancelled) { try cancellation.run { try http.perform(propfind) } }
        #expect(ContinuousClock.now - started < .seconds(4))
        try server.control("clear", [:])
    }

    @Test func deadlineBoundsTheExchangeAcrossRetries() throws {
        try server.fault(method: "PROPFIND", action: "stall", count: 5, seconds: 60)
        let started = ContinuousClock.now
        let http = client()
        let error = #expect(throws: HTTPError.self) { try Cancellation(timeout: .seconds(2)).run { try http.perform(propfind) } }
        if case .timedOut = error {} else { Issue.record("expected a timeout, got \(String(describing: error))") }
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(1900) && took < .seconds(5), "\(took)")
        try server.control("clear", [:])
    }

    @Test func noCancellationOutsideRun() throws {
        #expect(Cancellation.current == nil)
        let outer = Cancellation()
        outer.run {
            #expect(Cancellation.current === outer)
            let inner = Cancellation()
            inner.run { #expect(Cancellation.current === inner) }
            #expect(Cancellation.current === outer)
        }
        #expect(Cancellation.current == nil)
    }

    @Test func fileSinkDownloadsIgnoreTheDeadline() throws {
        let client = try server.client()
        try client.put("big.bin", body: .bytes([UInt8](repeating: 1, count: 1 << 20)))
        // The body is held back 3 s, longer than the 1 s deadline: a file download is not cut.
        try server.fault(method: "GET", pathContains: "big.bin", action: "delay", count: 1, seconds: 3)
        let target = server.dataDir.appendingPathComponent("download.bin").path
        let http = self.client()
        let response = try Cancellation(timeout: .seconds(1)).run {
            try http.perform(HTTPRequest(method: "GET", url: server.baseURL + "big.bin", acceptCompressed: false), sink: .file(path: target))
        }
        #expect(response.status == 200)
        #expect((try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) == 1 << 20)
    }
}
