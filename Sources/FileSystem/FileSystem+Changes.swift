import RemoteCache

/// A kernel cache entry to drop: a name in a folder (dentry) or an inode's attributes and
/// cached pages.
public enum Invalidation: Sendable, Equatable {
    case entry(parent: UInt64, name: String)
    case inode(UInt64)
}

/// Receives invalidations on the thread that found the change (a worker or the poll).
/// The FUSE bridge must hand them to a thread of its own: invalidating a dentry waits for the
/// kernel's directory lock, which a request still waiting for this thread may hold.
public protocol InvalidationObserver: AnyObject, Sendable {
    func invalidate(_ items: [Invalidation])
}

extension FileSystem: CacheObserver {
    public func cacheDidChange(_ changes: [CacheChange]) {
        var items: [Invalidation] = []
        for change in changes {
            guard let folder = inodes.existing(change.folder) else { continue }
            items.append(.inode(folder))
            for name in change.names {
                items.append(.entry(parent: folder, name: name))
                if let child = inodes.existing(FolderListing.join(change.folder, name)) { items.append(.inode(child)) }
            }
        }
        if !items.isEmpty { invalidationObserver?.invalidate(items) }
    }
}
