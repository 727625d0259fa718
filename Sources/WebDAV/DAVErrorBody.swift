/// What a Sabre/Nextcloud error body says, for logs and for decisions a status code alone
/// cannot make (`retry`, which precondition failed).
///
/// The shape (reference §9.1):
/// ```xml
/// <d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:o="http://owncloud.org/ns">
///   <s:exception>OCA\DAV\Connector\Sabre\Exception\InvalidPath</s:exception>
///   <s:message>…</s:message>
///   <o:retry xmlns:o="o:">false</o:retry>
///   <o:reason xmlns:o="o:">"?" is not allowed inside a file or folder name.</o:reason>
/// </d:error>
/// ```
/// Nextcloud creates `o:retry`, `o:reason` and `o:hint` with `createElementNS('o:', …)`, so
/// their namespace URI is literally `o:` rather than the ownCloud one it declares; they are
/// therefore matched by local name only. The `s:` elements are matched by namespace.
public struct DAVErrorBody: Sendable, Equatable {
    /// `s:exception`, the server's exception class, e.g. `Sabre\DAV\Exception\NotFound`.
    public var exception: String?
    /// `s:message`.
    public var message: String?
    /// `o:reason` (Nextcloud `Forbidden`/`InvalidPath`): why, in words meant for users.
    public var reason: String?
    /// `o:retry`: whether repeating the request may succeed.
    public var retry: Bool?
    /// `s:header` (Sabre `PreconditionFailed`): the header whose condition failed, e.g. `If-Match`.
    public var header: String?
    /// `o:hint` (Nextcloud `TooManyRequests`).
    public var hint: String?

    public init(exception: String? = nil, message: String? = nil, reason: String? = nil,
                retry: Bool? = nil, header: String? = nil, hint: String? = nil) {
        self.exception = exception
        self.message = message
        self.reason = reason
        self.retry = retry
        self.header = header
        self.hint = hint
    }

    /// Error bodies are a few hundred bytes; a debug-mode stack trace is a few KiB. Anything
    /// past 1 MiB is not an error body worth reading.
    static let maxBytes = 1 << 20

    /// Parses a Sabre/Nextcloud `d:error` body; nil when the body is not one (HTML page, empty,
    /// JSON, malformed, over 1 MiB, with a DOCTYPE).
    public static func parse(_ bytes: [UInt8]) -> DAVErrorBody? {
        guard !bytes.isEmpty, bytes.count <= maxBytes else { return nil }
        let reader = DAVErrorBodyReader()
        let xml = XMLPushParser(handler: reader)
        // `withUnsafeBytes` rethrows untyped errors; the outcome is carried out as a Bool instead.
        let fed = bytes.withUnsafeBytes { buffer in (try? xml.feed(buffer)) != nil }
        guard fed, (try? xml.finish()) != nil else { return nil }
        return reader.body
    }
}

/// SAX handler for `DAVErrorBody`: the root must be `{DAV:}error`; its direct children with a
/// known name are read, everything else (stack traces, RFC 4918 precondition elements) skipped.
private final class DAVErrorBodyReader: XMLEventHandler {
    private enum Field { case exception, message, header, reason, retry, hint }

    private static let sabre: StaticString = "http://sabredav.org/ns"

    private(set) var body: DAVErrorBody?
    private var depth = 0
    private var field: Field?
    private var text: [UInt8] = []

    func startElement(_ name: XMLName) -> Bool {
        depth += 1
        switch depth {
        case 1:
            // Not an error body: stop now rather than read the rest.
            guard name.is("DAV:", "error") else { return false }
            body = DAVErrorBody()
        case 2:
            field = Self.field(name)
            text.removeAll(keepingCapacity: true)
        default:
            // Markup inside a field: the field is not plain text, so it is not taken.
            field = nil
        }
        return depth <= 16
    }

    func endElement() -> Bool {
        defer { depth -= 1 }
        guard depth == 2, let field else { return true }
        self.field = nil
        let value = MultistatusValues.string(MultistatusValues.trimmed(text[...]))
        switch field {
        case .exception: body?.exception = value
        case .message: body?.message = value
        case .header: body?.header = value
        case .reason: body?.reason = value
        case .hint: body?.hint = value
        case .retry: body?.retry = value == "true" ? true : value == "false" ? false : nil
        }
        return true
    }

    func text(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if field != nil, depth == 2 { text.append(contentsOf: bytes) }
        return true
    }

    private static func field(_ name: XMLName) -> Field? {
        if name.hasNamespace(sabre) {
            if name.hasLocalName("exception") { return .exception }
            if name.hasLocalName("message") { return .message }
            if name.hasLocalName("header") { return .header }
            return nil
        }
        if name.hasLocalName("reason") { return .reason }
        if name.hasLocalName("retry") { return .retry }
        if name.hasLocalName("hint") { return .hint }
        return nil
    }
}
