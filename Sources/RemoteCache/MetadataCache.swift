import Foundation
import WebDAV
public import Logging
public import WebDAV

/// The directory cache: one `PROPFIND Depth: 1` per folder answers readdir, lookup and
/// getattr for every child, and a listing that has no name is a negative answer for it.
///
/// Freshness. A listing is trusted for `freshness` after it was last confirmed. Past that, the
/// next use sends a `Depth: 0` PROPFIND for the folder's ETag only and relists (Depth: 1) only
/// if the ETag changed. Nextcloud gives every ancestor of a changed item a new ETag, so the
/// background poll (`MetadataCache+Poll`) can confirm *every* cached listing with one request
/// on the root; while it runs, `freshness` is stretched to cover two poll intervals (one
/// missed poll is tolerated), and a change on the server reaches the cache within one poll
/// interval. Without the poll, `freshness` is the attribute timeout (default 1 s).
///
/// Failures. If revalidation cannot reach the server (transport error, 503), the stale
/// listing keeps answering (a cached `ls` works while the server is down) and is retried on
/// the next use; a cold listing failure is thrown to the caller.
///
/// Listings are never evicted today; a listing costs roughly the bytes measured in
/// `FileSystemTests` per child (docs/SEMANTICS.md, "Not implemented yet" of the read side).
public final class MetadataCache: @unchecked Sendable {
    // @unchecked: all mutable state below is guarded by `condition` (its lock); the client
    // and configuration are immutable and Sendable.

    public struct Configuration: Sendable {
        /// How long a listing is trusted without asking the server.
        public var freshness: Duration
        /// Root-ETag poll interval; nil means no poll.
        public var pollInterval: Duration?

        public init(freshness: Duration = .seconds(1), pollInterval: Duration? = .seconds(30)) {
            self.freshness = freshness
            self.pollInterval = pollInterval
        }

        /// The window a listing stays valid: the attribute timeout, or two poll intervals
        /// while the poll confirms the whole tree (one poll may fail or run late).
        public var effectiveFreshness: Duration {
            guard let pollInterval else { return freshness }
            return max(freshness, pollInterval * 2)
        }
    }

    /// Seconds as a Double, for APIs (kernel timeouts) that take one.
    public static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    struct Slot {
        var listing: FolderListing
        /// Monotonic time (ns) the listing was last known to match the server.
        var validatedAt: UInt64
    }

    public let client: any RemoteStore
    public let configuration: Configuration
    let logger: Logger
    public weak var observer: (any CacheObserver)? {
        get { condition.lock(); defer { condition.unlock() }; return _observer }
        set { condition.lock(); _observer = newValue; condition.unlock() }
    }

    /// Guards `slots`, `inFlight`, `treeValidatedAt`, `_observer`, `quota`, `pollStopped`. Never held across a
    /// request: a fetch marks its path in `inFlight`, unlocks, and others wanting the same
    /// folder wait on the condition (single flight, so a cold `ls` costs one PROPFIND even
    /// when the kernel asks for several children at once). The poll takes no other lock.
    let condition = NSCondition()
    var slots: [String: Slot] = [:]
    var inFlight: Set<String> = []
    /// When the poll last confirmed the whole tree (every listing cached then was valid).
    var treeValidatedAt: UInt64 = 0
    weak var _observer: (any CacheObserver)?
    /// Set by `stopPolling`; read by the poll thread.
    var pollStopped = false
    var quota: (value: DAVResource, at: UInt64)?

    public init(client: any RemoteStore, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "ncfs.cache")) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
    }

    public static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    static func nanoseconds(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        return UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, a / 1_000_000_000))
    }

    /// Whether a slot is valid at `now` (caller holds the lock).
    func isFresh(_ slot: Slot, now: UInt64) -> Bool {
        let confirmed = max(slot.validatedAt, configuration.pollInterval == nil ? 0 : treeValidatedAt)
        return now &- confirmed < MetadataCache.nanoseconds(configuration.effectiveFreshness)
    }

    // MARK: Reading

    /// The listing of the folder at `path`, fetched, revalidated or from memory as freshness
    /// requires. Throws the DAVError of a failed cold fetch (`.notFound`, `.conflict` for a file).
    public func listing(_ path: String) throws -> FolderListing {
        condition.lock()
        while true {
            if let slot = slots[path], isFresh(slot, now: MetadataCache.now()) {
                condition.unlock()
                return slot.listing
            }
            if !inFlight.contains(path) { break }
            condition.wait()
        }
        inFlight.insert(path)
        let stale = slots[path]
        condition.unlock()

        var result: Result<FolderListing, any Error>
        var changes: [CacheChange] = []
        do {
            let (listing, found) = try refresh(path, stale: stale?.listing)
            result = .success(listing)
            changes = found
        } catch let error as DAVError where stale != nil && MetadataCache.isOutage(error) {
            logger.warning("revalidation of /\(path) failed, serving the cached listing: \(error)")
            result = .success(stale!.listing)
        } catch {
            result = .failure(error)
        }

        condition.lock()
        inFlight.remove(path)
        if case .failure(let error as DAVError) = result, error.kind == .notFound || error.kind == .conflict {
            removeSubtree(path)
        }
        let observer = _observer
        condition.broadcast()
        condition.unlock()
        if !changes.isEmpty { observer?.cacheDidChange(changes) }
        return try result.get()
    }

    /// The entry at `path` ("" is the root folder), from its parent's listing. nil when the
    /// parent's listing has no such name (the negative cache); throws when the parent is gone.
    public func entry(_ path: String) throws -> RemoteEntry? {
        if path.isEmpty { return try listing("").folder }
        let (parent, name) = MetadataCache.split(path)
        return try listing(parent).child(named: name)
    }

    /// The cached listing of `path` whatever its age, without any request (nil if never listed).
    public func cachedListing(_ path: String) -> FolderListing? {
        condition.lock(); defer { condition.unlock() }
        return slots[path]?.listing
    }

    /// Stores a listing known without asking (a folder just created is empty), valid as if
    /// just fetched.
    public func store(_ listing: FolderListing) {
        condition.lock(); defer { condition.unlock() }
        slots[listing.path] = Slot(listing: listing, validatedAt: MetadataCache.now())
    }

    /// Forgets the listing of `path` and everything below it, so the next use lists again.
    public func invalidate(_ path: String) {
        condition.lock(); defer { condition.unlock() }
        removeSubtree(path)
    }

    /// The root's quota properties (`PropertySet.withQuota`), cached for the freshness window.
    public func quotaInfo() throws -> DAVResource {
        condition.lock()
        // df figures need not be exact: kept a minute (or the freshness window, if longer).
        let lifetime = max(MetadataCache.nanoseconds(configuration.effectiveFreshness), 60_000_000_000)
        if let q = quota, MetadataCache.now() &- q.at < lifetime {
            condition.unlock()
            return q.value
        }
        condition.unlock()
        let value = try client.stat("", properties: .withQuota)
        condition.lock()
        quota = (value, MetadataCache.now())
        condition.unlock()
        return value
    }

    /// Number of cached listings and of entries in them.
    public var statistics: (folders: Int, entries: Int) {
        condition.lock(); defer { condition.unlock() }
        return (slots.count, slots.values.reduce(0) { $0 + $1.listing.children.count })
    }

    // MARK: Fetching (no lock held)

    /// Revalidates `stale` with a Depth-0 ETag check, or lists. Stores the result.
    func refresh(_ path: String, stale: FolderListing?) throws -> (FolderListing, [CacheChange]) {
        let started = MetadataCache.now()
        if let stale, !stale.folder.etag.isEmpty {
            let current = try client.stat(path, properties: .etagAndSize)
            if current.etag == stale.folder.etag {
                condition.lock()
                slots[path]?.validatedAt = started
                condition.unlock()
                return (stale, [])
            }
        }
        return try fetch(path, startedAt: started)
    }

    /// Lists `path` with one Depth-1 PROPFIND, stores it and returns what changed compared
    /// with the listing it replaces.
    func fetch(_ path: String, startedAt: UInt64) throws -> (FolderListing, [CacheChange]) {
        let (folder, children) = try client.list(path)
        var me = RemoteEntry(folder)
        if path.isEmpty { me.name = "" }
        let listing = FolderListing(path: path, folder: me, children: children.map(RemoteEntry.init), fetchedAt: startedAt)
        condition.lock()
        let old = slots[path]?.listing
        slots[path] = Slot(listing: listing, validatedAt: startedAt)
        // Child folders that vanished or changed type take their cached subtree with them.
        if let old {
            for child in old.children where child.isDirectory && listing.child(named: child.name)?.isDirectory != true {
                removeSubtree(listing.childPath(child.name))
            }
        }
        condition.unlock()
        guard let old else { return (listing, []) }
        let names = listing.changedNames(since: old)
        return (listing, names.isEmpty ? [] : [CacheChange(folder: path, names: names)])
    }

    /// Removes the slot of `path` and of every folder below it (caller holds the lock).
    func removeSubtree(_ path: String) {
        if path.isEmpty { slots.removeAll(); return }
        let prefix = path + "/"
        for key in slots.keys where key == path || key.hasPrefix(prefix) { slots[key] = nil }
    }

    /// Failures that mean "cannot ask right now" rather than "the answer is no".
    static func isOutage(_ error: DAVError) -> Bool {
        switch error.kind {
        case .transport, .unavailable, .throttled, .server: return true
        default: return false
        }
    }

    /// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
    public static func split(_ path: String) -> (parent: String, name: String) {
        PathBytes.split(path)
    }
}
