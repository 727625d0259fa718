import Foundation
import WebDAV

extension MetadataCache {
    /// One round of the background poll: a `Depth: 0` PROPFIND of the root's ETag. Unchanged →
    /// every cached listing is confirmed (1 request). Changed → relist the root and descend
    /// only into cached folders whose ETag differs from their cached listing's, relisting each.
    /// Returns (and tells the observer) what changed.
    @discardableResult
    public func poll() throws -> [CacheChange] {
        let started = MetadataCache.now()
        let root = try client.stat("", properties: .etagAndSize)
        condition.lock()
        guard let cachedRoot = slots[""]?.listing else {
            treeValidatedAt = started
            condition.unlock()
            return []
        }
        if root.etag == cachedRoot.folder.etag && !cachedRoot.folder.etag.isEmpty {
            treeValidatedAt = started
            condition.unlock()
            return []
        }
        condition.unlock()

        var changes: [CacheChange] = []
        var pending = [""]
        while let path = pending.popLast() {
            let listing: FolderListing
            do {
                let (fresh, found) = try fetch(path, startedAt: started)
                listing = fresh
                changes += found
            } catch let error as DAVError where error.kind == .notFound || error.kind == .conflict {
                invalidate(path)
                changes.append(CacheChange(folder: path, names: [], folderRemoved: true))
                continue
            }
            condition.lock()
            for child in listing.children where child.isDirectory {
                let childPath = listing.childPath(child.name)
                if let cached = slots[childPath] {
                    if cached.listing.folder.etag != child.etag || child.etag.isEmpty {
                        pending.append(childPath)
                    } else {
                        slots[childPath]?.validatedAt = started
                    }
                }
            }
            condition.unlock()
        }
        condition.lock()
        treeValidatedAt = started
        let observer = _observer
        condition.unlock()
        if !changes.isEmpty { observer?.cacheDidChange(changes) }
        return changes
    }
}

extension MetadataCache {
    /// Starts the background poll on its own thread (not the Swift concurrency pool: each
    /// round blocks on a request). Does nothing without a poll interval.
    public func startPolling() {
        guard let interval = configuration.pollInterval else { return }
        let thread = Thread { [self] in
            let seconds = Double(MetadataCache.nanoseconds(interval)) / 1e9
            while true {
                condition.lock()
                let deadline = Date().addingTimeInterval(seconds)
                while !pollStopped && Date() < deadline { _ = condition.wait(until: deadline) }
                let stop = pollStopped
                condition.unlock()
                if stop { return }
                do { try poll() } catch { logger.warning("poll failed: \(error)") }
            }
        }
        thread.name = "ncfs-poll"
        thread.start()
    }

    /// Ends the poll thread after its current round.
    public func stopPolling() {
        condition.lock()
        pollStopped = true
        condition.broadcast()
        condition.unlock()
    }
}
