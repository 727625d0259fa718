import Dispatch

/// One folder as a `Depth: 1` PROPFIND described it: the folder itself and its children,
/// sorted by name. Immutable once built, so a reader (readdir holding a snapshot across
/// several calls) needs no lock; a relist builds a new listing.
public final class FolderListing: Sendable {
    /// The folder's path relative to the mount root ("" is the root).
    public let path: String
    public let folder: RemoteEntry
    /// Sorted by name: a name is found by binary search. (A name → index dictionary cost
    /// 40 bytes per entry at its usual fill, 4 MiB of a 100,000-entry tree, for lookups that
    /// take 17 comparisons in a 100,000-entry folder without it.)
    public let children: [RemoteEntry]
    /// Monotonic time (ns, `DispatchTime`) the request that produced this listing was sent:
    /// local changes made before it are in it, later ones may not be.
    public let fetchedAt: UInt64

    public init(path: String, folder: RemoteEntry, children: [RemoteEntry],
                fetchedAt: UInt64 = DispatchTime.now().uptimeNanoseconds) {
        self.path = path
        self.folder = folder
        self.fetchedAt = fetchedAt
        self.children = children.sorted { $0.name < $1.name }
    }

    /// The child called `name`, or nil: a fresh listing without the name is the negative cache.
    public func child(named name: String) -> RemoteEntry? {
        position(of: name).map { children[$0] }
    }

    /// Where the child called `name` is in `children`, or nil.
    public func position(of name: String) -> Int? {
        var low = 0, high = children.count
        while low < high {
            let middle = (low + high) / 2
            let other = children[middle].name
            if other == name { return middle }
            if other < name { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    /// The path of a child of this folder.
    public func childPath(_ name: String) -> String { FolderListing.join(path, name) }

    public static func join(_ parent: String, _ name: String) -> String {
        parent.isEmpty ? name : parent + "/" + name
    }

    /// Names whose entry appeared, disappeared or changed (ETag, size, type, mode) between two
    /// listings of the same folder.
    func changedNames(since old: FolderListing) -> [String] {
        var names: [String] = []
        for child in children {
            guard let before = old.child(named: child.name) else { names.append(child.name); continue }
            if before.etag != child.etag || before.size != child.size || before.isDirectory != child.isDirectory
                || before.mtime != child.mtime || before.posix != child.posix {
                names.append(child.name)
            }
        }
        for before in old.children where child(named: before.name) == nil { names.append(before.name) }
        return names
    }
}
