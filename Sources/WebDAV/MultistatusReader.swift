/// The multistatus state machine behind `MultistatusParser`: turns SAX events into
/// `DAVResource`s.
///
/// The document shape (RFC 4918 §14.16) and where each level sits:
/// ```
/// 1 multistatus
/// 2   response
/// 3     href+            status (whole-href error)    propstat*
/// 4                                                    prop          status (comes AFTER prop)
/// 5                                                      <property>
/// 6                                                        collection / oc:checksum
/// ```
/// A stack of the *known* elements drives it; an element not expected where it appears is
/// skipped with everything inside it (`skipDepth`), so unknown properties and extensions cost
/// nothing. Because a propstat's status follows its properties, the values of each propstat are
/// buffered and only merged into the response at `</propstat>`: 200 is taken, 404 (a folder has
/// no `getcontentlength`) dropped, anything else recorded in `failedProperties`.
///
/// Text is accumulated as bytes, and only inside an element whose value is wanted.
///
/// A struct with mutating methods rather than a class: the state is touched a dozen times per
/// event, and in a class every one of those touches is a dynamic exclusivity check. Held in
/// one stored property of `MultistatusReader.Handler`, it costs one check per event.
struct MultistatusReader {
    private enum Context {
        case document, multistatus, response, propstat, prop, resourceType, checksums
        case text(TextField)
    }

    private enum TextField {
        case href, responseStatus, propstatStatus, checksum
        case property(MultistatusProperty)
    }

    private typealias Property = MultistatusProperty

    private let limits: MultistatusLimits
    private let resolver: MultistatusHrefResolver
    private let onResponse: ((DAVResource) -> Void)?

    /// Lets `XMLPushParser` (which needs a class) drive the reader.
    final class Handler: XMLEventHandler {
        var reader: MultistatusReader

        init(_ reader: MultistatusReader) { self.reader = reader }

        func startElement(_ name: XMLName) -> Bool { reader.startElement(name) }
        func endElement() -> Bool { reader.endElement() }
        func text(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool { reader.text(bytes) }
    }

    /// Responses in document order, when no `onResponse` callback takes them.
    private(set) var resources: [DAVResource] = []
    /// Why the reader stopped the parse.
    private(set) var failure: MultistatusError?

    private var stack: [Context] = [.document]
    private var depth = 0
    /// Depth of the element being skipped, 0 when none is.
    private var skipDepth = 0
    private var text: [UInt8] = []
    private var responseCount = 0

    // The response being read.
    private var hrefs: [(href: String, path: String)] = []
    private var responseStatus: Int?
    private var responseValues = MultistatusPropertyValues()
    private var failedProperties: [String: Int] = [:]

    // The propstat being read.
    private var propstatValues = MultistatusPropertyValues()
    private var propstatStatus: Int?
    /// Names of the propstat's properties as `namespace NUL local NUL` pairs: they are needed
    /// only when the status turns out to be a failure, so no Strings are built before that.
    private var propstatNames: [UInt8] = []

    init(limits: MultistatusLimits, resolver: MultistatusHrefResolver, onResponse: ((DAVResource) -> Void)?) {
        self.limits = limits
        self.resolver = resolver
        self.onResponse = onResponse
        text.reserveCapacity(512)
        stack.reserveCapacity(8)
    }

    // MARK: Events

    // Each event first checks `failure`: libxml2 stops calling back once halted, and this keeps
    // it that way even if a stray event slipped through (no response is emitted after an error).

    mutating func startElement(_ name: XMLName) -> Bool {
        guard failure == nil else { return false }
        depth += 1
        guard depth <= limits.maxDepth else { return fail(.tooDeep) }
        guard skipDepth == 0, let context = stack.last else { return true }
        let dav = Property.dav
        switch context {
        case .document:
            guard name.is(dav, "multistatus") else { return fail(.notMultistatus) }
            stack.append(.multistatus)
        case .multistatus:
            guard name.is(dav, "response") else { return skip() }
            responseCount += 1
            guard responseCount <= limits.maxResponses else { return fail(.tooManyResponses) }
            hrefs.removeAll(keepingCapacity: true)
            responseStatus = nil
            responseValues = MultistatusPropertyValues()
            failedProperties = [:]
            stack.append(.response)
        case .response:
            if name.is(dav, "href") {
                beginText(.href)
            } else if name.is(dav, "propstat") {
                propstatValues = MultistatusPropertyValues()
                propstatStatus = nil
                propstatNames.removeAll(keepingCapacity: true)
                stack.append(.propstat)
            } else if name.is(dav, "status") {
                beginText(.responseStatus)
            } else {
                return skip()
            }
        case .propstat:
            if name.is(dav, "prop") {
                stack.append(.prop)
            } else if name.is(dav, "status") {
                beginText(.propstatStatus)
            } else {
                return skip()
            }
        case .prop:
            recordPropertyName(name)
            switch Property(name) {
            case .resourceType?:
                propstatValues.isCollection = false
                stack.append(.resourceType)
            case .checksums?:
                propstatValues.checksums = []
                stack.append(.checksums)
            case let property?:
                beginText(.property(property))
            case nil:
                return skip()
            }
        case .resourceType:
            if name.is(dav, "collection") { propstatValues.isCollection = true }
            return skip()
        case .checksums:
            guard name.is(Property.owncloud, "checksum") else { return skip() }
            beginText(.checksum)
        case .text:
            // Markup inside a text value (never sent by a real server): its content is ignored.
            return skip()
        }
        return true
    }

    mutating func endElement() -> Bool {
        guard failure == nil else { return false }
        defer { depth -= 1 }
        if skipDepth != 0 {
            if depth == skipDepth { skipDepth = 0 }
            return true
        }
        switch stack.removeLast() {
        case .text(let field): return endText(field)
        case .propstat: return endPropstat()
        case .response: return endResponse()
        case .document, .multistatus, .prop, .resourceType, .checksums: return true
        }
    }

    mutating func text(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard failure == nil else { return false }
        guard skipDepth == 0, case .text? = stack.last else { return true }
        // Checked before appending, so an endless text node costs at most the limit.
        guard bytes.count <= limits.maxTextLength - text.count else { return fail(.textTooLong) }
        text.append(contentsOf: bytes)
        return true
    }

    // MARK: Steps

    private mutating func fail(_ error: MultistatusError) -> Bool {
        if failure == nil { failure = error }
        return false
    }

    private mutating func skip() -> Bool {
        skipDepth = depth
        return true
    }

    private mutating func beginText(_ field: TextField) {
        text.removeAll(keepingCapacity: true)
        stack.append(.text(field))
    }

    private mutating func recordPropertyName(_ name: XMLName) {
        propstatNames.append(contentsOf: name.namespaceBytes)
        propstatNames.append(0)
        propstatNames.append(contentsOf: name.localNameBytes)
        propstatNames.append(0)
    }

    private mutating func endText(_ field: TextField) -> Bool {
        let value = MultistatusValues.trimmed(text[...])
        switch field {
        case .href:
            let href = MultistatusValues.string(value)
            do {
                let path = try resolver.resolve(value, href: href)
                hrefs.append((href, path))
            } catch {
                return fail(error)
            }
        case .responseStatus:
            guard let code = MultistatusValues.statusCode(value) else { return fail(invalidStatus(value)) }
            responseStatus = code
        case .propstatStatus:
            guard let code = MultistatusValues.statusCode(value) else { return fail(invalidStatus(value)) }
            propstatStatus = code
        case .checksum:
            propstatValues.addChecksums(text: value)
        case .property(let property):
            propstatValues.set(property, text: value)
        }
        return true
    }

    private func invalidStatus(_ value: ArraySlice<UInt8>) -> MultistatusError {
        .malformed("invalid status line \(MultistatusValues.string(value).debugDescription)")
    }

    private mutating func endPropstat() -> Bool {
        guard let status = propstatStatus else { return fail(.malformed("propstat without status")) }
        switch status {
        case 200:
            responseValues.merge(propstatValues)
        case 404:
            break
        default:
            let parts = propstatNames.split(separator: 0, omittingEmptySubsequences: false)
            for pair in stride(from: 0, to: parts.count - 1, by: 2) {
                let namespace = MultistatusValues.string(parts[pair])
                let local = MultistatusValues.string(parts[pair + 1])
                failedProperties[namespace.isEmpty ? local : "{\(namespace)}\(local)"] = status
            }
        }
        return true
    }

    private mutating func endResponse() -> Bool {
        guard !hrefs.isEmpty else { return fail(.malformed("response without href")) }
        for (href, path) in hrefs {
            var resource = DAVResource(href: href, path: path)
            responseValues.apply(to: &resource)
            resource.status = responseStatus
            resource.failedProperties = failedProperties
            if let onResponse {
                onResponse(resource)
            } else {
                resources.append(resource)
            }
        }
        return true
    }
}
