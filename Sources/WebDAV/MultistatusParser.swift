/// Streaming reader for `207 Multi-Status` bodies (PROPFIND, SEARCH, trash listings,
/// PROPPATCH and DELETE/MOVE answers).
///
/// Feed it the body chunk by chunk as it downloads; it never holds the whole body and never
/// builds a DOM, so a listing's memory cost is the resulting `DAVResource`s (or nothing, with
/// `onResponse`). Elements are matched by namespace URI, never by prefix, so Nextcloud's `d:`,
/// Apache's `D:`/`lp1:` and a default namespace read the same.
///
/// Hostile input fails with a specific `MultistatusError` and no side effect: a DOCTYPE (the
/// door to entity expansion and external entities) is refused outright, every href is checked
/// against the request's origin and the listing root (`MultistatusHrefResolver`), and
/// `MultistatusLimits` bounds size, count, text length and depth.
///
/// Not Sendable: one parser belongs to one request on one thread. The first error is sticky:
/// the parser stops and `feed`/`finish` keep throwing it.
public final class MultistatusParser {
    private let limits: MultistatusLimits
    private let handler: MultistatusReader.Handler
    private let xml: XMLPushParser
    private var bytesFed = 0
    private var failure: MultistatusError?
    private var finished = false

    /// - Parameters:
    ///   - requestURL: the absolute URL the request went to (e.g.
    ///     `http://127.0.0.1:8080/remote.php/dav/files/alice/Photos/`); hrefs given as full URLs
    ///     must have its scheme, host and port.
    ///   - root: the decoded absolute path `DAVResource.path` is relative to (e.g.
    ///     `/remote.php/dav/files/alice/`); an href outside it is refused.
    ///   - onResponse: called with each response as soon as it is complete, from inside `feed`;
    ///     `finish` then returns an empty array. It must not call back into this parser.
    public init(requestURL: String, root: String, limits: MultistatusLimits = .init(),
                onResponse: ((DAVResource) -> Void)? = nil) {
        self.limits = limits
        let resolver = MultistatusHrefResolver(requestURL: requestURL, root: root)
        handler = MultistatusReader.Handler(MultistatusReader(limits: limits, resolver: resolver, onResponse: onResponse))
        xml = XMLPushParser(handler: handler)
    }

    /// Parses the next piece of the body (any size, split anywhere, even inside a UTF-8
    /// character). Must not be called after a successful `finish`.
    public func feed(_ chunk: UnsafeRawBufferPointer) throws(MultistatusError) {
        if let failure { throw failure }
        precondition(!finished, "MultistatusParser.feed after finish")
        guard chunk.count <= limits.maxBytes - bytesFed else {
            throw record(.tooLarge(limit: limits.maxBytes))
        }
        bytesFed += chunk.count
        do {
            try xml.feed(chunk)
        } catch {
            throw record(translate(error))
        }
    }

    /// Ends the body: a truncated document fails here. Returns the responses in document order
    /// (empty when `onResponse` took them). The first is, for PROPFIND, the requested node.
    public func finish() throws(MultistatusError) -> [DAVResource] {
        if let failure { throw failure }
        if !finished {
            do {
                try xml.finish()
            } catch {
                throw record(translate(error))
            }
            finished = true
        }
        return handler.reader.resources
    }

    /// Parses a body already in memory.
    public static func parse(_ bytes: some Collection<UInt8>, requestURL: String, root: String,
                             limits: MultistatusLimits = .init()) throws(MultistatusError) -> [DAVResource] {
        let parser = MultistatusParser(requestURL: requestURL, root: root, limits: limits)
        // `withContiguousStorageIfAvailable` rethrows untyped, so the typed error is carried out.
        var failure: MultistatusError?
        func feed(_ buffer: UnsafeBufferPointer<UInt8>) {
            do { try parser.feed(UnsafeRawBufferPointer(buffer)) } catch { failure = error }
        }
        if bytes.withContiguousStorageIfAvailable(feed) == nil {
            Array(bytes).withUnsafeBufferPointer(feed)
        }
        if let failure { throw failure }
        return try parser.finish()
    }

    private func record(_ error: MultistatusError) -> MultistatusError {
        if failure == nil { failure = error }
        return failure ?? error
    }

    private func translate(_ failure: XMLPushParser.Failure) -> MultistatusError {
        switch failure {
        case .doctype: .doctypeForbidden
        case .malformed(let message): .malformed(message)
        case .stoppedByHandler: handler.reader.failure ?? .malformed("stopped")
        }
    }
}
