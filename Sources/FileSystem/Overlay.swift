import Foundation
import RemoteCache

/// What this mount changed that the cached listings may not show yet, laid over them.
///
/// Three kinds of item, per folder and name:
/// - a staged file (written here, upload pending): always wins, its size and mtime are the
///   local ones, until its upload is done;
/// - a name this mount created, renamed or uploaded (`present`), or removed (`absent`):
///   wins over a listing fetched before the change, and is dropped once a listing fetched
///   after it arrives (the server's word is then newer than ours).
///
/// Without this, every mkdir, create or rename would have to relist the folder to be seen
/// (one PROPFIND per operation, quadratic for a bulk copy into one folder).
final class Overlay: @unchecked Sendable {
    // @unchecked: `folders` is guarded by `lock`, a leaf lock.
    enum Item {
        case staged(StagedFile)
        case present(RemoteEntry, since: UInt64)
        case absent(since: UInt64)
    }

    private let lock = NSLock()
    private var folders: [String: [String: Item]] = [:]

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func set(_ path: String, _ item: Item) {
        let (folder, name) = MetadataCache.split(path)
        lock.lock(); defer { lock.unlock() }
        folders[folder, default: [:]][name] = item
    }

    func present(_ path: String, _ entry: RemoteEntry) { set(path, .present(entry, since: Overlay.now())) }
    func absent(_ path: String) { set(path, .absent(since: Overlay.now())) }

    /// Drops the item at `path` if it is the staged file `file` (its upload finished or it
    /// was removed).
    func unstage(_ path: String, _ file: StagedFile, replacement: Item?) {
        let (folder, name) = MetadataCache.split(path)
        lock.lock(); defer { lock.unlock() }
        guard case .staged(let current)? = folders[folder]?[name], current === file else { return }
        folders[folder]?[name] = replacement
        if folders[folder]?.isEmpty == true { folders[folder] = nil }
    }

    /// The entry at `path` as this mount knows it: `.some(entry)`, `.some(nil)` for a name
    /// known to be gone, nil when the listing decides. Items older than `listing` are dropped.
    func lookup(_ path: String, listing: FolderListing) -> RemoteEntry?? {
        let (folder, name) = MetadataCache.split(path)
        lock.lock(); defer { lock.unlock() }
        guard let item = folders[folder]?[name] else { return nil }
        switch item {
        case .staged(let file): return .some(file.entry(name: name))
        case .present(let entry, let since):
            if since < listing.fetchedAt { drop(folder, name); return nil }
            return .some(entry)
        case .absent(let since):
            if since < listing.fetchedAt { drop(folder, name); return nil }
            return .some(nil)
        }
    }

    /// `listing` with this folder's items applied (the same object when there are none).
    func merge(_ listing: FolderListing) -> FolderListing {
        lock.lock(); defer { lock.unlock() }
        guard let items = folders[listing.path], !items.isEmpty else { return listing }
        var byName: [String: RemoteEntry] = [:]
        for child in listing.children { byName[child.name] = child }
        for (name, item) in items {
            switch item {
            case .staged(let file): byName[name] = file.entry(name: name)
            case .present(let entry, let since):
                if since < listing.fetchedAt { drop(listing.path, name) } else { byName[name] = entry }
            case .absent(let since):
                if since < listing.fetchedAt { drop(listing.path, name) } else { byName[name] = nil }
            }
        }
        return FolderListing(path: listing.path, folder: listing.folder, children: Array(byName.values),
                             fetchedAt: listing.fetchedAt)
    }

    /// Moves every item at or below `from` to the same place below `to` (a folder rename).
    func moveTree(from: String, to: String) {
        lock.lock(); defer { lock.unlock() }
        let prefix = from + "/"
        for folder in Array(folders.keys) where folder == from || folder.hasPrefix(prefix) {
            let moved = to + folder.dropFirst(from.count)
            folders[moved] = folders.removeValue(forKey: folder)
        }
    }

    /// Staged files in the folder `path` (to tell whether it is empty).
    func hasStaged(in folder: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return folders[folder]?.values.contains { if case .staged = $0 { true } else { false } } ?? false
    }

    private func drop(_ folder: String, _ name: String) {
        folders[folder]?[name] = nil
        if folders[folder]?.isEmpty == true { folders[folder] = nil }
    }
}
