/// What the cache learnt changed on the server: a folder whose listing differs, with the
/// names inside it that appeared, disappeared or changed. The FileSystem turns these into
/// kernel cache invalidations.
public struct CacheChange: Sendable, Equatable {
    public var folder: String
    public var names: [String]
    /// True when the folder itself is gone (its listing was dropped).
    public var folderRemoved: Bool

    public init(folder: String, names: [String], folderRemoved: Bool = false) {
        self.folder = folder
        self.names = names
        self.folderRemoved = folderRemoved
    }
}

/// Told about changes, outside every cache lock, on the thread that found them (a request's
/// worker or the poll thread). Implementations must not block on FUSE from there.
public protocol CacheObserver: AnyObject, Sendable {
    func cacheDidChange(_ changes: [CacheChange])
}
