// The one place in WebDAV that talks to libxml2. Everything above it (the multistatus reader,
// the error-body reader) sees element names, text bytes and a verdict, never a C type.
//
// Why SAX2 *push*: a Depth-1 PROPFIND on a big folder is megabytes of XML. The push parser lets
// the HTTP layer hand over each chunk as curl receives it, so the body is never held whole and
// never turned into a DOM. Only the SAX callbacks listed in `XMLPushParser.makeHandler()` are
// installed; libxml2's default SAX2 handlers are deliberately not used because they build a tree.
//
// Hardening, and why each piece is enough on libxml2 2.9.14 (Debian 12):
// - No XML_PARSE_NOENT / DTDLOAD / HUGE: entities are never substituted, external subsets never
//   loaded, and libxml2's own limits (name length, lookahead, nesting depth 256) stay on as a
//   backstop behind `MultistatusLimits`.
// - XML_PARSE_NONET: even if something tried to load a resource, the network is off.
// - A DOCTYPE stops the parser in the `internalSubset` callback, which libxml2 calls as soon as
//   it has read `<!DOCTYPE name ...` and *before* the internal subset's declarations are parsed,
//   so no entity is ever declared. Without a DTD (and with no `getEntity` callback), a reference
//   to anything but the five predefined entities is a fatal "not defined" error. `entityDecl`
//   and `externalSubset` reject as well, should libxml2 ever reach them.

internal import CLibXML2
import Logging
import Synchronization

/// `xmlInitParser` must run once before parsers are created from several threads; a global
/// `let` is initialised lazily and exactly once (swift_once), which is the guarantee needed.
/// It also makes `LibXML2Diagnostics` the default handler of threads created from then on.
private let libxml2Initialised: Void = {
    xmlInitParser()
    xmlThrDefSetStructuredErrorFunc(nil, LibXML2Diagnostics.handler)
}()

/// What libxml2 reports outside any parser context (its encoding converters: "input conversion
/// failed", on a body that declares one encoding and holds bytes of another) would go to stderr
/// by default: a hostile server could write lines into the daemon's log that way. They go to the
/// logger instead, as one sanitised line, at most `perMinute` a minute (then one line saying how
/// many were left out). Errors inside a parse already reach that parser's `serror` callback.
enum LibXML2Diagnostics {
    static let perMinute = 5
    private static let state = Mutex<(windowStart: ContinuousClock.Instant, logged: Int, dropped: Int, total: Int)>(
        (ContinuousClock.now, 0, 0, 0))
    private static let logger = Logger(label: "ncfs.libxml2")

    /// Diagnostics seen so far (logged or not), for tests.
    static var count: Int { state.withLock { $0.total } }

    static let handler: xmlStructuredErrorFunc = { _, error in
        guard let error else { return }
        LibXML2Diagnostics.report(error.pointee.message.map { String(cString: $0) } ?? "error \(error.pointee.code)")
    }

    /// Installs the handler for the calling thread (libxml2's handlers are per thread; threads
    /// that existed before the first parse, such as curl's callers, get it here).
    static func installOnThisThread() {
        xmlSetStructuredErrorFunc(nil, handler)
    }

    /// One line of printable ASCII, at most 200 characters: nothing the server sent can start a
    /// new log line or smuggle control sequences.
    static func sanitise(_ raw: String) -> String {
        var line = String(String.UnicodeScalarView(raw.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? $0 : " " }))
        line = line.trimmingCharacters(in: .whitespaces)
        if line.count > 200 { line = String(line.prefix(200)) + "…" }
        return line
    }

    static func report(_ raw: String) {
        let line = sanitise(raw)
        let now = ContinuousClock.now
        let (emit, dropped) = state.withLock { s -> (Bool, Int) in
            s.total += 1
            var reportDropped = 0
            if now - s.windowStart >= .seconds(60) {
                reportDropped = s.dropped
                s = (now, 0, 0, s.total)
            }
            if s.logged < perMinute {
                s.logged += 1
                return (true, reportDropped)
            }
            s.dropped += 1
            return (false, reportDropped)
        }
        if dropped > 0 { logger.warning("libxml2: \(dropped) more diagnostics in the last minute were not logged") }
        if emit { logger.warning("libxml2: \(line)") }
    }
}

/// An element name with its namespace resolved by libxml2 (prefixes play no part).
/// The pointers belong to the parser and are valid only during the callback that hands them out.
struct XMLName {
    /// NUL-terminated namespace URI; nil for an element in no namespace.
    let namespace: UnsafePointer<UInt8>?
    /// NUL-terminated local name.
    let localName: UnsafePointer<UInt8>

    func `is`(_ namespaceURI: StaticString, _ local: StaticString) -> Bool {
        hasLocalName(local) && hasNamespace(namespaceURI)
    }

    func hasNamespace(_ namespaceURI: StaticString) -> Bool {
        guard let namespace else { return false }
        return Self.equals(namespace, namespaceURI)
    }

    func hasLocalName(_ local: StaticString) -> Bool {
        Self.equals(localName, local)
    }

    /// The namespace URI without its NUL (empty for no namespace).
    var namespaceBytes: UnsafeBufferPointer<UInt8> {
        guard let namespace else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(start: namespace, count: Int(xmlStrlen(namespace)))
    }

    /// The local name without its NUL.
    var localNameBytes: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: localName, count: Int(xmlStrlen(localName)))
    }

    /// Compares a C string with a literal without `strlen`: the first mismatch ends the loop, and
    /// the C string's terminating NUL mismatches every byte of the literal, so no byte past the
    /// terminator is ever read.
    private static func equals(_ cString: UnsafePointer<UInt8>, _ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        let bytes = literal.utf8Start
        for i in 0..<count where cString[i] != bytes[i] { return false }
        return cString[count] == 0
    }
}

/// Receives the events of an `XMLPushParser`. Returning false stops the parse; the handler keeps
/// its own record of why (the parser only learns that it was stopped).
protocol XMLEventHandler: AnyObject {
    func startElement(_ name: XMLName) -> Bool
    func endElement() -> Bool
    /// Character data, possibly split across several calls; not NUL-terminated; valid during
    /// the call only. CDATA sections and whitespace arrive here too.
    func text(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool
}

/// A libxml2 SAX2 push parser feeding one `XMLEventHandler`.
///
/// Not Sendable: libxml2 parser contexts are single-threaded, and the handler is called
/// synchronously from `feed`/`finish` on the caller's thread.
final class XMLPushParser {
    enum Failure: Error, Equatable {
        /// The document has a DOCTYPE (the only way to declare entities); nothing was expanded.
        case doctype
        /// libxml2 found the document not well-formed: its message and line.
        case malformed(String)
        /// The handler returned false.
        case stoppedByHandler
    }

    /// libxml2 buffers what it cannot parse yet; handing it bounded pieces keeps a single
    /// enormous `feed` from being copied into its buffer in one go, and lets a handler that
    /// stops early (a limit) do so before the rest is even looked at.
    private static let pieceSize = 64 << 10

    private let handler: any XMLEventHandler
    /// nil only when libxml2 could not allocate a context (out of memory).
    private var context: xmlParserCtxtPtr?
    private(set) var failure: Failure?

    init(handler: any XMLEventHandler) {
        _ = libxml2Initialised
        self.handler = handler
        var sax = Self.makeHandler()
        // Unretained: the context is freed in deinit, so it never outlives `self`.
        let userData = Unmanaged.passUnretained(self).toOpaque()
        context = xmlCreatePushParserCtxt(&sax, userData, nil, 0, nil)
        if let context {
            let options = Int32(XML_PARSE_NONET.rawValue)
            xmlCtxtUseOptions(context, options)
        }
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        if let failure { throw failure }
        guard let context else { throw fail(.malformed("libxml2 could not allocate a parser")) }
        guard let base = bytes.baseAddress else { return }
        LibXML2Diagnostics.installOnThisThread()
        var offset = 0
        while offset < bytes.count {
            let length = min(bytes.count - offset, Self.pieceSize)
            let piece = (base + offset).assumingMemoryBound(to: CChar.self)
            xmlParseChunk(context, piece, Int32(length), 0)
            try check(context)
            offset += length
        }
    }

    /// Tells libxml2 the input is complete; a truncated document fails here.
    func finish() throws(Failure) {
        if let failure { throw failure }
        guard let context else { throw fail(.malformed("libxml2 could not allocate a parser")) }
        LibXML2Diagnostics.installOnThisThread()
        xmlParseChunk(context, nil, 0, 1)
        try check(context)
    }

    /// The return value of `xmlParseChunk` is `ctxt->errNo`, which warnings may set too, so the
    /// verdict comes from the error callback and `wellFormed` instead.
    private func check(_ context: xmlParserCtxtPtr) throws(Failure) {
        if let failure { throw failure }
        if context.pointee.wellFormed == 0 {
            throw fail(.malformed("libxml2 reported the document as not well-formed"))
        }
    }

    /// Records the first failure and halts libxml2; later callbacks see `failure` and do nothing.
    @discardableResult
    private func fail(_ failure: Failure) -> Failure {
        if self.failure == nil { self.failure = failure }
        if let context { xmlStopParser(context) }
        return self.failure ?? failure
    }

    // MARK: Callbacks

    private static func parser(_ ctx: UnsafeMutableRawPointer?) -> XMLPushParser? {
        guard let ctx else { return nil }
        return Unmanaged<XMLPushParser>.fromOpaque(ctx).takeUnretainedValue()
    }

    private func deliver(_ event: (any XMLEventHandler) -> Bool) {
        guard failure == nil else { return }
        if !event(handler) { fail(.stoppedByHandler) }
    }

    private func deliverText(_ bytes: UnsafePointer<UInt8>?, _ length: Int32) {
        guard let bytes, length > 0 else { return }
        deliver { $0.text(UnsafeBufferPointer(start: bytes, count: Int(length))) }
    }

    /// A zeroed handler with only the callbacks we need. `initialized = XML_SAX2_MAGIC` makes
    /// libxml2 use the namespace-aware `startElementNs`/`endElementNs` and the structured error
    /// callback. Closures are `@convention(c)` without captures; they find the parser through
    /// the context's user data.
    private static func makeHandler() -> xmlSAXHandler {
        var sax = xmlSAXHandler()
        sax.initialized = XML_SAX2_MAGIC
        sax.startElementNs = { ctx, localName, _, namespace, _, _, _, _, _ in
            guard let parser = XMLPushParser.parser(ctx), let localName else { return }
            parser.deliver { $0.startElement(XMLName(namespace: namespace, localName: localName)) }
        }
        sax.endElementNs = { ctx, _, _, _ in
            XMLPushParser.parser(ctx)?.deliver { $0.endElement() }
        }
        sax.characters = { ctx, bytes, length in
            XMLPushParser.parser(ctx)?.deliverText(bytes, length)
        }
        // Same callback as `characters`: libxml2 then skips its "is this blank?" heuristics and
        // hands over every byte of text.
        sax.ignorableWhitespace = sax.characters
        sax.cdataBlock = { ctx, bytes, length in
            XMLPushParser.parser(ctx)?.deliverText(bytes, length)
        }
        sax.internalSubset = { ctx, _, _, _ in
            XMLPushParser.parser(ctx)?.fail(.doctype)
        }
        sax.externalSubset = { ctx, _, _, _ in
            XMLPushParser.parser(ctx)?.fail(.doctype)
        }
        sax.entityDecl = { ctx, _, _, _, _, _ in
            XMLPushParser.parser(ctx)?.fail(.doctype)
        }
        sax.serror = { ctx, error in
            guard let parser = XMLPushParser.parser(ctx), let error else { return }
            // Warnings (e.g. a relative namespace URI) do not make a document unusable.
            guard error.pointee.level.rawValue >= XML_ERR_ERROR.rawValue else { return }
            var message = error.pointee.message.map { String(cString: $0) } ?? "XML error \(error.pointee.code)"
            while message.last?.isWhitespace == true { message.removeLast() }
            parser.fail(.malformed("\(message) (line \(error.pointee.line))"))
        }
        return sax
    }
}
