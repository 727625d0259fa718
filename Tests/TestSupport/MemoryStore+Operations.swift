public import Foundation
public import HTTPTransport
public import WebDAV

/// The seam's operations on the in-memory tree. Each one checks what a `WebDAVClient` checks
/// before sending (name rules, names that cannot travel in a bulk header, a readable body),
/// then counts the call, applies a pending fault, and runs on the tree under the lock. The
/// errors carry the method and status a WebDAV client would report.
extension MemoryStore {
    // MARK: Reading

    public func stat(_ path: String, properties: PropertySet) throws -> DAVResource {
        let p = DAVLocation.normalize(path)
        return try call(.stat, method: "PROPFIND", path: p) {
            guard let node = shared.node(p) else { throw Self.notFound("PROPFIND", p) }
            return resource(node, path: p, properties: properties)
        }
    }

    public func list(_ path: String, properties: PropertySet) throws -> (folder: DAVResource, children: [DAVResource]) {
        let p = DAVLocation.normalize(path)
        return try call(.list, method: "PROPFIND", path: p) {
            guard let node = shared.node(p) else { throw Self.notFound("PROPFIND", p) }
            guard node.isFolder else { throw DAVError(.conflict, method: "PROPFIND", path: p, detail: "not a folder") }
            let children = node.children.values.sorted { $0.name < $1.name }.map { child in
                resource(child, path: p.isEmpty ? child.name : p + "/" + child.name, properties: properties)
            }
            return (resource(node, path: p, properties: properties), children)
        }
    }

    /// What Nextcloud answers a GET of a folder.
    static let folderPage = "This is the WebDAV interface. It can only be accessed by WebDAV clients such as the Nextcloud desktop sync client."

    public func get(_ path: String, range: Range<Int64>?, ifMatch: String?, sink: ResponseSink,
                    progress: ((Int64, Int64) -> Void)?) throws -> GetResult {
        let p = DAVLocation.normalize(path)
        // The client asks nothing for an empty range.
        if let range, range.isEmpty { return GetResult(status: 206, etag: nil, contentLength: 0, bytes: []) }
        let (bytes, etag, status) = try call(.get, method: "GET", path: p) { () throws -> ([UInt8], String?, Int) in
            guard let node = shared.node(p) else { throw Self.notFound("GET", p) }
            if node.isFolder {
                // Nextcloud answers a folder with a page, before any condition, ignoring a range.
                guard range == nil else {
                    throw DAVError(.protocolViolation, method: "GET", path: p, status: 200, detail: "the server ignored the Range header")
                }
                return (Array(Self.folderPage.utf8), nil, 200)
            }
            if let ifMatch, !ifMatch.isEmpty, ifMatch != "*", Self.unquote(ifMatch) != node.etag {
                throw DAVError(.preconditionFailed, method: "GET", path: p, status: 412,
                               detail: "An If-Match header was specified, but none of the specified ETags matched.")
            }
            guard let range else { return (node.content, node.etag, 200) }
            let size = Int64(node.content.count)
            guard range.lowerBound < size else {
                throw DAVError(.server, method: "GET", path: p, status: 416,
                               detail: "The start offset (\(range.lowerBound)) exceeded the size of the entity (\(size))")
            }
            return (Array(node.content[Int(range.lowerBound)..<Int(min(range.upperBound, size))]), node.etag, 206)
        }
        // Delivered outside the lock: a consumer may take locks of its own.
        let total = Int64(bytes.count)
        var kept: [UInt8] = []
        switch sink {
        case .memory(let limit):
            guard bytes.count <= limit else {
                throw DAVError(.transport, method: "GET", path: p, transport: .responseTooLarge(limit: limit))
            }
            kept = bytes
        case .file(let target):
            // Like the transport: a temporary name, renamed when complete.
            let temporary = target + ".ncfs-partial-\(getpid())"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)), rename(temporary, target) == 0 else {
                unlink(temporary)
                throw DAVError(.transport, method: "GET", path: p, transport: .sinkFailed(message: "\(target): \(String(cString: strerror(errno)))"))
            }
        case .stream(let consume):
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + (64 << 10), bytes.count)
                try bytes.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
                offset = end
            }
        }
        progress?(total, total)
        return GetResult(status: status, etag: etag, contentLength: total, bytes: kept)
    }

    // MARK: Writing

    public func put(_ path: String, body: HTTPRequestBody, mtime: Date?, conditions: WriteConditions,
                    checksum: String?, progress: ((Int64, Int64) -> Void)?) throws -> PutResult {
        let p = DAVLocation.normalize(path)
        try checkName(p, method: "PUT")
        let content = try Self.read(body, method: "PUT", path: p)
        let result = try call(.put, method: "PUT", path: p) {
            let (folder, name) = try parentFolder(p, method: "PUT")
            let existing = folder.children[name]
            if existing?.isFolder == true { throw Self.conflict("PUT", p, "PUT is not allowed on non-files.") }
            try Self.check(conditions, against: existing, method: "PUT", path: p)
            return try store(content, in: folder, name: name, path: p, method: "PUT", mtime: mtime, checksum: checksum)
        }
        progress?(Int64(content.count), Int64(content.count))
        return result
    }

    public func mkcol(_ path: String) throws {
        let p = DAVLocation.normalize(path)
        try checkName(p, method: "MKCOL")
        try call(.mkcol, method: "MKCOL", path: p) {
            let (folder, name) = try parentFolder(p, method: "MKCOL")
            guard folder.children[name] == nil else {
                throw DAVError(.alreadyExists, method: "MKCOL", path: p, status: 405, detail: "The resource you tried to create already exists")
            }
            let made = Node(name: name, isFolder: true, fileID: shared.allocateID(), etag: shared.newETag(), mtime: shared.now)
            shared.attach(made, to: folder, as: name)
            shared.propagate(from: folder)
        }
    }

    public func delete(_ path: String, permanently: Bool) throws {
        let p = DAVLocation.normalize(path)
        try call(.delete, method: "DELETE", path: p) {
            guard let node = shared.node(p) else { throw Self.notFound("DELETE", p) }
            guard !p.isEmpty else { throw DAVError(.forbidden, method: "DELETE", path: p, status: 403, detail: "Could not delete the home folder") }
            let parent = node.parent
            shared.detach(node)
            shared.propagate(from: parent)
        }
    }

    public func move(_ from: String, to: String, overwrite: Bool) throws -> PutResult {
        let source = DAVLocation.normalize(from)
        let target = DAVLocation.normalize(to)
        try checkName(target, method: "MOVE")
        return try call(.move, method: "MOVE", path: source) {
            guard let node = shared.node(source) else { throw Self.notFound("MOVE", source) }
            guard !source.isEmpty, !target.isEmpty, source != target else {
                throw DAVError(.forbidden, method: "MOVE", path: source, status: 403, detail: "the home folder, or source and destination identical")
            }
            if node.isFolder && target.hasPrefix(source + "/") {
                throw Self.conflict("MOVE", source, "Cannot move a node into a subnode of itself")
            }
            let (folder, name) = try parentFolder(target, method: "MOVE")
            let existing = folder.children[name]
            if existing != nil && !overwrite {
                throw DAVError(.preconditionFailed, method: "MOVE", path: source, status: 412,
                               detail: "The destination node already exists, and the overwrite header is set to false")
            }
            if existing != nil && source.hasPrefix(target + "/") {
                throw Self.conflict("MOVE", source, "The destination is an ancestor of the source")
            }
            if let existing {
                shared.detach(existing)
                shared.propagate(from: folder)
            }
            let oldParent = node.parent
            shared.detach(node)
            shared.attach(node, to: folder, as: name)
            // Nextcloud 32 moves the dead properties of the moved path only.
            var below = Array(node.children.values)
            while let child = below.popLast() {
                child.posix = nil
                below += child.children.values
            }
            shared.propagate(from: oldParent)
            shared.propagate(from: folder)
            return PutResult(created: existing == nil, etag: node.isFolder ? nil : node.etag, fileID: node.fileID, mtimeAccepted: false)
        }
    }

    public func setModificationTime(_ path: String, _ date: Date) throws {
        let p = DAVLocation.normalize(path)
        try call(.setModificationTime, method: "PROPPATCH", path: p) {
            guard let node = shared.node(p) else { throw Self.notFound("PROPPATCH", p) }
            let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
            guard seconds > 86_400 else {
                throw DAVError(.server, method: "PROPPATCH", path: p, status: 500, detail: "X-OC-MTime header must be a valid positive integer")
            }
            node.mtime = seconds
            node.etag = shared.newETag()
            shared.propagate(from: node.parent, raiseMtime: false)
        }
    }

    public func setPosixProperty(_ path: String, _ value: String?) throws {
        let p = DAVLocation.normalize(path)
        try call(.setPosixProperty, method: "PROPPATCH", path: p) {
            guard let node = shared.node(p) else { throw Self.notFound("PROPPATCH", p) }
            // Sabre stores the element's text, which the server trims.
            node.posix = value?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    // MARK: Bulk upload

    public func bulkUploadsAvailable() -> Bool { shared.lock.withLock { shared.offersBulk && !bulkTurnedOff } }

    public func noBulkUploads(_ why: String) { shared.lock.withLock { bulkTurnedOff = true } }

    public func bulkUpload(_ files: [BulkFile]) throws -> [BulkOutcome] {
        guard !files.isEmpty else { return [] }
        var paths: [String] = []
        for file in files {
            let p = DAVLocation.normalize(file.path)
            try checkName(p, method: "PUT")
            guard WebDAVClient.bulkEligible(p) else {
                throw DAVError(.invalidName, method: "POST", path: p, detail: "this name cannot travel in a bulk upload header")
            }
            paths.append(p)
        }
        do {
            return try call(.bulkUpload, method: "POST", path: "bulk") {
                guard shared.offersBulk else { throw DAVError(.notFound, method: "POST", path: "bulk", status: 404) }
                // Part by part, as the server stores them: a refused part leaves the others.
                var stopped = false
                return zip(files, paths).map { file, p in
                    if let stopping = bulkPartFaults.removeValue(forKey: p) {
                        stopped = stopped || stopping
                        if !stopping { return .refused("injected failure") }
                    }
                    if stopped { return .notProcessed }
                    let parts = p.split(separator: "/").map(String.init)
                    guard let name = parts.last else { return .refused("Invalid X-File-Path") }
                    guard file.mtime > 86_400 else { return .refused("X-OC-MTime header must be a valid positive integer") }
                    guard let folder = shared.node(parts.dropLast().joined(separator: "/")), folder.isFolder else {
                        return .refused("Parent folder of /\(p) does not exist")
                    }
                    if folder.children[name]?.isFolder == true { return .refused("/\(p) is a folder") }
                    let (node, _) = shared.commit(file.content, in: folder, name: name, mtime: file.mtime)
                    return .stored(etag: node.etag, fileID: node.fileID, permissions: "RGDNVW")
                }
            }
        } catch let error as DAVError where WebDAVClient.bulkEndpointMissing(error) {
            noBulkUploads("the server refused a bulk upload (\(error))")
            throw error
        }
    }

    // MARK: Chunked upload

    public func chunkedUploadsAvailable() -> Bool { shared.lock.withLock { shared.offersChunking && !chunkingTurnedOff } }

    public func noChunkedUploads(_ why: String) { shared.lock.withLock { chunkingTurnedOff = true } }

    public func uploadChunked(_ localPath: String, to path: String, mtime: Date?, conditions: WriteConditions,
                              options: ChunkedUploadOptions, progress: (@Sendable (Int64, Int64) -> Void)?) throws -> PutResult {
        let p = DAVLocation.normalize(path)
        try checkName(p, method: "PUT")
        guard let data = FileManager.default.contents(atPath: localPath) else {
            throw DAVError(.transport, method: "PUT", path: p, transport: .bodyUnreadable(path: localPath, errno: ENOENT))
        }
        let total = Int64(data.count)
        guard options.chunkSize > 0, (total + options.chunkSize - 1) / options.chunkSize <= 10_000 else {
            throw DAVError(.badRequest, method: "PUT", path: p, detail: "more than 10,000 chunks: raise the chunk size")
        }
        let result = try call(.uploadChunked, method: "MOVE", path: p) {
            guard shared.offersChunking && shared.hasUploadsEndpoint else {
                throw DAVError(.notFound, method: "PROPFIND", path: "uploads/\(options.uploadID)", status: 404)
            }
            // The assembling MOVE: its target's parent must exist, `Overwrite: F` stands for
            // "create only", and the client compared the target's ETag just before.
            let (folder, name) = try parentFolder(p, method: "MOVE")
            let existing = folder.children[name]
            if existing?.isFolder == true { throw Self.conflict("MOVE", p, "the target is a folder") }
            try Self.check(conditions, against: existing, method: "MOVE", path: p)
            return try store(Array(data), in: folder, name: name, path: p, method: "MOVE", mtime: mtime)
        }
        progress?(total, total)
        return result
    }

    // MARK: Helpers (callers hold the lock unless said otherwise)

    /// Counts a call of `operation` and runs `body` on the tree under the lock, unless a
    /// pending fault throws instead (or, for a lost answer, after `body` ran).
    /// The hook set with `intercept` sees the call before it and, if it was carried out (its
    /// answer success or error), after it, both outside the lock.
    func call<T>(_ operation: Operation, method: String, path: String, _ body: () throws -> T) throws -> T {
        let hook = shared.lock.withLock { interceptor }
        try hook?(operation, path, .before)
        let (fault, result): (Fault?, Result<T, any Error>?) = shared.lock.withLock {
            counts[operation, default: 0] += 1
            let fault = takeFault(operation)
            if let fault, !fault.afterPerforming { return (fault, nil) }
            return (fault, Result { try body() })
        }
        if let fault, !fault.afterPerforming { throw fault.error(method: method, path: path) }
        try hook?(operation, path, .performed)
        if let fault { throw fault.error(method: method, path: path) }
        return try result!.get()
    }

    /// The client's own check of the name a request creates (no request is made).
    func checkName(_ p: String, method: String) throws {
        let name = p.split(separator: "/").last.map(String.init) ?? ""
        try nameRules.value.check(name, method: method, path: p)
    }

    /// The folder that is to hold `p`, and the name in it; `.conflict` when it is missing.
    func parentFolder(_ p: String, method: String) throws -> (Node, String) {
        var parts = p.split(separator: "/").map(String.init)
        guard let name = parts.popLast() else { throw Self.conflict(method, p, "the root cannot be written") }
        guard let folder = shared.node(parts.joined(separator: "/")), folder.isFolder else {
            throw Self.conflict(method, p, "Parent node does not exist")
        }
        return (folder, name)
    }

    /// Stores a file's content with the mtime a request carried. A bad mtime is refused after
    /// the content is in place (500), as Nextcloud's sanitizer does.
    /// `checksum` is the request's `OC-Checksum` (kept with the file; none clears the old one).
    func store(_ content: [UInt8], in folder: Node, name: String, path p: String, method: String, mtime: Date?,
               checksum: String? = nil) throws -> PutResult {
        let seconds = mtime.map { Int64($0.timeIntervalSince1970.rounded(.down)) }
        let valid = seconds.flatMap { $0 > 86_400 ? $0 : nil }
        let (node, created) = shared.commit(content, in: folder, name: name, mtime: valid, checksum: checksum)
        if seconds != nil && valid == nil {
            throw DAVError(.server, method: method, path: p, status: 500, detail: "X-OC-MTime header must be a valid positive integer")
        }
        return PutResult(created: created, etag: node.etag, fileID: node.fileID, mtimeAccepted: valid != nil)
    }

    /// `If-Match` and `If-None-Match: *` against the entry at the name (nil: none).
    static func check(_ conditions: WriteConditions, against node: Node?, method: String, path p: String) throws {
        if let tag = conditions.ifMatch {
            // Nextcloud gives folders no ETag for conditions: only "*" matches one.
            guard let node, tag == "*" || (!node.isFolder && unquote(tag) == node.etag) else {
                throw DAVError(.preconditionFailed, method: method, path: p, status: 412,
                               detail: node == nil ? "An If-Match header was specified and the resource did not exist"
                                                   : "An If-Match header was specified, but none of the specified ETags matched.")
            }
        }
        if conditions.createOnly && node != nil {
            throw DAVError(.preconditionFailed, method: method, path: p, status: 412,
                           detail: "An If-None-Match header was specified, but the ETag matched (or * was specified).")
        }
    }

    /// A request body's bytes (outside the lock); an unreadable file fails like the transport.
    static func read(_ body: HTTPRequestBody, method: String, path p: String) throws -> [UInt8] {
        switch body {
        case .empty: return []
        case .bytes(let bytes): return bytes
        case .file(let file, let offset, let length):
            guard let handle = FileHandle(forReadingAtPath: file) else {
                throw DAVError(.transport, method: method, path: p, transport: .bodyUnreadable(path: file, errno: ENOENT))
            }
            defer { try? handle.close() }
            let data = (try? handle.seek(toOffset: UInt64(offset))).flatMap { try? handle.read(upToCount: Int(length)) } ?? Data()
            guard data.count == Int(length) else {
                throw DAVError(.transport, method: method, path: p, transport: .bodyUnreadable(path: file, errno: EIO))
            }
            return Array(data)
        }
    }

    /// The entry as a PROPFIND answer with `properties` would describe it.
    func resource(_ node: Node, path: String, properties: PropertySet) -> DAVResource {
        let asked = Set(properties.properties.map { $0.0 + $0.1 })
        let dav = "DAV:", oc = "http://owncloud.org/ns"
        var r = DAVResource(href: "/remote.php/dav/files/memory/" + DAVLocation.percentEncodePath(path) + (node.isFolder && !path.isEmpty ? "/" : ""),
                            path: path, isCollection: node.isFolder)
        if asked.contains(dav + "getetag") { r.etag = node.etag }
        if asked.contains(dav + "getlastmodified") { r.lastModified = Date(timeIntervalSince1970: TimeInterval(node.mtime)) }
        if asked.contains(dav + "getcontentlength") && !node.isFolder { r.contentLength = Int64(node.content.count) }
        if asked.contains(oc + "fileid") { r.fileID = node.fileID }
        if asked.contains(oc + "permissions") { r.permissions = node.isFolder ? "RGDNVCK" : "RGDNVW" }
        if asked.contains(oc + "size") { r.size = node.size }
        if node.isFolder && asked.contains(dav + "quota-used-bytes") { r.quotaUsed = node.size }
        // -3: unlimited.
        if node.isFolder && asked.contains(dav + "quota-available-bytes") { r.quotaAvailable = -3 }
        if asked.contains(PropertySet.ncfs + "posix") { r.posix = node.posix }
        if asked.contains(oc + "checksums") && !node.isFolder && !node.checksum.isEmpty { r.checksums = [node.checksum] }
        return r
    }

    static func unquote(_ etag: String) -> String {
        var s = etag.trimmingCharacters(in: .whitespaces)
        if s.hasPrefix("W/") { s.removeFirst(2) }
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = String(s.dropFirst().dropLast()) }
        return s
    }

    static func notFound(_ method: String, _ p: String) -> DAVError {
        DAVError(.notFound, method: method, path: p, status: 404, detail: "File with name \(p) could not be located")
    }

    static func conflict(_ method: String, _ p: String, _ detail: String) -> DAVError {
        DAVError(.conflict, method: method, path: p, status: 409, detail: detail)
    }
}
