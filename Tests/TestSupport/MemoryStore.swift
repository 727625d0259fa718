import Foundation
import HTTPTransport
public import WebDAV

/// A `RemoteStore` held in memory with Nextcloud 32's semantics for what the seam covers, so
/// the file system and its write-back run in process with no server and no socket. Where a
/// behaviour was in doubt, the emulator (`scripts/testserver/ncstore.py`, `nchandler.py`) is
/// the reference, and through it the real server's answers it was checked against:
///
/// - Files have content, an mtime in whole seconds, an ETag (13 hex digits like PHP's
///   `uniqid`, new at every content change and at every `setModificationTime`) and a file id
///   that a MOVE keeps. A folder's `oc:size` is the byte total below it.
/// - A change below a folder gives it and every ancestor one new ETag and raises their mtime
///   to now; setting an mtime gives the ancestors a new ETag but leaves their mtime.
/// - `If-Match` fails for a missing file, another version, and any folder (Nextcloud gives
///   collections no ETag for conditions); `If-None-Match: *` fails when the name exists.
/// - A missing parent is `.conflict` (409) for PUT, MKCOL and MOVE; a bulk part into a
///   missing folder is refused alone, the request goes on.
/// - MOVE with overwrite replaces the target (into the trash bin, which this store does not
///   keep: deleted entries are gone); the moved entry keeps its dead property and every entry
///   below a moved folder loses its own (Nextcloud 32's `CustomPropertiesBackend::move`).
/// - An mtime of a day after the epoch or less is stored anyway and then refused with a 500,
///   as Nextcloud's `MtimeSanitizer` does after the content is in place.
/// - A PUT's `OC-Checksum` is kept and shown as `oc:checksums`; new content without one (a
///   PUT without the header, a chunked upload, a bulk part: ncfs sends none with those)
///   clears it.
/// - Public link shares (`createPublicShare`, for ingest) get a new token at every call.
/// - Chunked upload is offered (`chunking: true`) or answered like a server without the
///   upload collection (404 on `uploads/<id>`); bulk upload is offered or answered 404.
///
/// Every client of one store is a *view* (`view(_:)`): the views share the tree, each has its
/// own call counts, fault queue and "turned off" switches for bulk and chunked uploads, like
/// separate `WebDAVClient`s of one server. Faults (`failNext`) make the next calls of some
/// operations through a view throw a `DAVError`, either instead of the operation or after it
/// was performed (a lost answer: the server did it, the client heard a reset).
///
/// One lock (`Shared.lock`) guards the tree, every view's counts, faults and switches; it is
/// never held while a `.stream` sink's consumer or a progress callback runs.
public final class MemoryStore: RemoteStore, @unchecked Sendable {
    // @unchecked: every mutable field, here and in `Shared`, is guarded by `shared.lock`.

    /// The operations of the seam, for counts and faults.
    public enum Operation: String, Sendable, CaseIterable {
        case stat, list, get, put, mkcol, delete, move, setModificationTime, setPosixProperty, bulkUpload, uploadChunked
        /// The OCS share API's POST (`createPublicShare`) and GET (`publicShares`); `download`
        /// counts as a `get`.
        case createPublicShare, publicShares
    }

    /// What one entry holds, as a test reads it.
    public struct Entry: Sendable, Equatable {
        public var isFolder: Bool
        public var content: [UInt8]
        public var mtime: Int64
        public var etag: String
        public var fileID: Int64
        public var posix: String?
        /// `oc:checksums` ("" for none).
        public var checksum: String
    }

    public let label: String
    public let nameRules: NameRulesBox
    /// A Nextcloud files URL of user `memory` (never contacted): what `location.url` builds
    /// the URLs ingest records from.
    public let location = try! DAVLocation(baseURL: "https://memory.invalid/remote.php/dav/files/memory/")
    let shared: Shared
    // Guarded by `shared.lock`.
    var counts: [Operation: Int] = [:]
    var faults: [Fault] = []
    var bulkTurnedOff = false
    /// Bulk parts to fail by path (see `failBulkPart`): true stops the request there.
    var bulkPartFaults: [String: Bool] = [:]
    var chunkingTurnedOff = false
    /// Sees every call through this view (`intercept`).
    var interceptor: Interceptor?

    /// A new, empty store (a root folder only). `bulk` and `chunking`: whether the server
    /// offers bulk and chunked uploads. `uploadsEndpoint` false: chunked uploads are offered
    /// but the upload collection is missing (capabilities that promise too much), so a chunked
    /// upload fails the way `WebDAVClient.uploadsEndpointMissing` recognises.
    public convenience init(bulk: Bool = true, chunking: Bool = true, uploadsEndpoint: Bool = true) {
        self.init(shared: Shared(bulk: bulk, chunking: chunking, uploadsEndpoint: uploadsEndpoint), label: "main")
    }

    init(shared: Shared, label: String) {
        self.shared = shared
        self.label = label
        self.nameRules = NameRulesBox(NameRules())
    }

    /// Another client of the same tree, with counts, faults and switches of its own.
    public func view(_ label: String) -> MemoryStore { MemoryStore(shared: shared, label: label) }

    // MARK: The tree

    final class Node {
        var name: String
        weak var parent: Node?
        let isFolder: Bool
        var children: [String: Node] = [:]
        var content: [UInt8] = []
        var fileID: Int64
        var etag: String
        var mtime: Int64
        var posix: String?
        /// `oc:checksums`: what the last content's request carried in `OC-Checksum` ("" for
        /// none; a new content without one clears it, as Nextcloud does).
        var checksum = ""

        init(name: String, isFolder: Bool, fileID: Int64, etag: String, mtime: Int64) {
            self.name = name
            self.isFolder = isFolder
            self.fileID = fileID
            self.etag = etag
            self.mtime = mtime
        }

        /// `oc:size`: a file's length, a folder's byte total below it.
        var size: Int64 {
            isFolder ? children.values.reduce(0) { $0 + $1.size } : Int64(content.count)
        }
    }

    final class Shared: @unchecked Sendable {
        // @unchecked: everything below is guarded by `lock`.
        let lock = NSLock()
        let offersBulk: Bool
        let offersChunking: Bool
        let hasUploadsEndpoint: Bool
        var root: Node
        var nextFileID: Int64 = 1
        /// ETags are a strictly increasing counter written like `uniqid()` (13 hex digits).
        var lastETag: UInt64
        /// Public link shares: token → the share's id and the shared entry's file id (so a
        /// share follows its entry through a move, as Nextcloud's do).
        var shares: [String: (id: Int, fileID: Int64)] = [:]
        var nextShareID = 1

        init(bulk: Bool, chunking: Bool, uploadsEndpoint: Bool) {
            offersBulk = bulk
            offersChunking = chunking
            hasUploadsEndpoint = uploadsEndpoint
            lastETag = UInt64(Date().timeIntervalSince1970 * 1_000_000)
            root = Node(name: "", isFolder: true, fileID: 0, etag: "", mtime: Int64(Date().timeIntervalSince1970))
            root.fileID = allocateID()
            root.etag = newETag()
        }

        func allocateID() -> Int64 {
            defer { nextFileID += 1 }
            return nextFileID
        }

        func newETag() -> String {
            lastETag += 1
            return String(lastETag, radix: 16).leftPadded(to: 13)
        }

        var now: Int64 { Int64(Date().timeIntervalSince1970) }

        /// The node at the normalized `path`, or nil (also when a parent is a file).
        func node(_ path: String) -> Node? {
            var node = root
            for name in path.split(separator: "/", omittingEmptySubsequences: true) {
                guard node.isFolder, let child = node.children[String(name)] else { return nil }
                node = child
            }
            return node
        }

        func path(of node: Node) -> String {
            var names: [String] = []
            var n: Node? = node
            while let current = n, current !== root {
                names.append(current.name)
                n = current.parent
            }
            return names.reversed().joined(separator: "/")
        }

        /// A change inside `folder`: one new ETag for it and every ancestor, and (for a change
        /// of what the folder holds) their mtime raised to now.
        func propagate(from folder: Node?, raiseMtime: Bool = true) {
            let etag = newETag()
            var n = folder
            while let current = n {
                current.etag = etag
                if raiseMtime { current.mtime = max(current.mtime, now) }
                n = current.parent
            }
        }

        func attach(_ node: Node, to folder: Node, as name: String) {
            node.name = name
            node.parent = folder
            folder.children[name] = node
        }

        func detach(_ node: Node) {
            node.parent?.children[node.name] = nil
            node.parent = nil
        }

        /// Stores `content` as the file `name` in `folder` (replacing a file there): new ETag,
        /// mtime `mtime` or now, ancestors changed. Returns the node and whether it is new.
        func commit(_ content: [UInt8], in folder: Node, name: String, mtime: Int64?, checksum: String? = nil) -> (Node, created: Bool) {
            let node: Node
            let created: Bool
            if let existing = folder.children[name] {
                node = existing
                created = false
            } else {
                node = Node(name: name, isFolder: false, fileID: allocateID(), etag: "", mtime: 0)
                attach(node, to: folder, as: name)
                created = true
            }
            node.content = content
            node.checksum = checksum ?? ""
            node.etag = newETag()
            node.mtime = mtime ?? now
            propagate(from: folder)
            return (node, created)
        }
    }

    // MARK: Reading the store (tests; not counted, no faults)

    /// Every folder and file below the root: what the server holds now.
    public func tree() -> (folders: Set<String>, files: [String: [UInt8]]) {
        shared.lock.withLock {
            var folders: Set<String> = [""]
            var files: [String: [UInt8]] = [:]
            var pending: [(Node, String)] = [(shared.root, "")]
            while let (folder, path) = pending.popLast() {
                for child in folder.children.values {
                    let childPath = path.isEmpty ? child.name : path + "/" + child.name
                    if child.isFolder {
                        folders.insert(childPath)
                        pending.append((child, childPath))
                    } else {
                        files[childPath] = child.content
                    }
                }
            }
            return (folders, files)
        }
    }

    /// The entry at `path`, or nil.
    public func entry(_ path: String) -> Entry? {
        shared.lock.withLock {
            shared.node(DAVLocation.normalize(path)).map {
                Entry(isFolder: $0.isFolder, content: $0.content, mtime: $0.mtime, etag: $0.etag, fileID: $0.fileID, posix: $0.posix,
                      checksum: $0.checksum)
            }
        }
    }

    /// Every public link share: token → the shared entry's path (nil when it is gone).
    public func allShares() -> [String: String?] {
        shared.lock.withLock {
            var paths: [Int64: String] = [:]
            var pending: [Node] = [shared.root]
            while let node = pending.popLast() {
                paths[node.fileID] = shared.path(of: node)
                pending += node.children.values
            }
            return shared.shares.mapValues { paths[$0.fileID] }
        }
    }

    /// Calls of `operation` through this view so far.
    public func calls(_ operation: Operation) -> Int { shared.lock.withLock { counts[operation] ?? 0 } }

    /// Calls of every operation through this view so far.
    public var totalCalls: Int { shared.lock.withLock { counts.values.reduce(0, +) } }

    // MARK: Changes by someone else (another client of the server; not counted, no faults)

    /// Writes a file as another client would (parents made as needed), with `mtime` or now
    /// and the `checksum` its request carried (`"SHA256:…"`; none by default).
    public func serverWrite(_ path: String, _ content: [UInt8], mtime: Int64? = nil, checksum: String? = nil) {
        shared.lock.withLock {
            let parts = DAVLocation.normalize(path).split(separator: "/").map(String.init)
            var folder = shared.root
            for name in parts.dropLast() {
                if let child = folder.children[name], child.isFolder {
                    folder = child
                } else {
                    let made = Node(name: name, isFolder: true, fileID: shared.allocateID(), etag: shared.newETag(), mtime: shared.now)
                    shared.attach(made, to: folder, as: name)
                    folder = made
                }
            }
            _ = shared.commit(content, in: folder, name: parts.last ?? "", mtime: mtime, checksum: checksum)
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
