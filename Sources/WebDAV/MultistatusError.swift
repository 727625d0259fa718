/// Why a multistatus body was refused. Every case is final for the body: the parser stops at
/// the first one and keeps throwing it.
public enum MultistatusError: Error, Equatable, CustomStringConvertible {
    /// Not well-formed XML (or cut short): libxml2's message and line.
    case malformed(String)
    /// The body declares a DOCTYPE, the only way to define entities (billion laughs, XXE).
    case doctypeForbidden
    /// An href on another origin, or outside the listing's root.
    case hrefOutsideRoot(String)
    /// An href that does not decode to a clean path: bad escapes, invalid UTF-8, control
    /// characters, `.`/`..` or empty segments, a query, a relative reference.
    case invalidHref(String)
    /// The body exceeded `MultistatusLimits.maxBytes`.
    case tooLarge(limit: Int)
    /// A text value exceeded `MultistatusLimits.maxTextLength`.
    case textTooLong
    /// More `d:response` elements than `MultistatusLimits.maxResponses`.
    case tooManyResponses
    /// Elements nested deeper than `MultistatusLimits.maxDepth`.
    case tooDeep
    /// The root element is not `{DAV:}multistatus`.
    case notMultistatus

    public var description: String {
        switch self {
        case .malformed(let message): "malformed multistatus: \(message)"
        case .doctypeForbidden: "multistatus with a DOCTYPE (refused: entities are never expanded)"
        case .hrefOutsideRoot(let href): "href outside the requested tree: \(href)"
        case .invalidHref(let href): "invalid href: \(href.debugDescription)"
        case .tooLarge(let limit): "multistatus larger than \(limit) bytes"
        case .textTooLong: "multistatus text value too long"
        case .tooManyResponses: "multistatus with too many responses"
        case .tooDeep: "multistatus nested too deeply"
        case .notMultistatus: "the body is not a DAV:multistatus"
        }
    }
}
