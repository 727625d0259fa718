import Foundation
import WebDAV

/// What a batch knows of the server's folders (`knownFolders`, `originalsOnServer`, declared
/// with the service's other state): the folders made once each, and the listing of each
/// original folder, shared by the workers.
extension IngestService {
    /// MKCOL of `path` and its missing parents, each at most once per run.
    func ensureFolder(_ path: String) throws {
        if foldersLock.withLock({ knownFolders.contains(path) }) { return }
        // One worker makes the folders at a time: the workers of a batch all need the same
        // date folders at its start, and each making them too cost a MKCOL per worker and
        // folder (27 instead of 7 for 8 photos on Nextcloud 32, with 423s among them).
        // Folders are made once per batch, so the wait is short and rare.
        folderMaking.lock()
        defer { folderMaking.unlock() }
        var prefix = ""
        for component in PathBytes.components(path) {
            prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
            if foldersLock.withLock({ knownFolders.contains(prefix) }) { continue }
            do {
                try store.mkcol(prefix)
                // A new folder: the cached listing of its parent (from before) lacks it.
                onFinished([PathBytes.split(prefix).parent], nil)
            } catch let error as DAVError where error.kind == .alreadyExists {
                // There already (or made by a retried request): either way it exists.
            }
            foldersLock.withLock { _ = knownFolders.insert(prefix) }
        }
    }

    /// A remote folder we thought existed is gone (a 409 on PUT): ask again next time.
    func forgetFolder(_ path: String) {
        foldersLock.withLock {
            knownFolders = knownFolders.filter { $0 != path && !$0.hasPrefix(path + "/") }
            originalsOnServer[path] = nil
        }
    }

    /// The queue went idle: the next batch lists the server's folders afresh (see
    /// `originalsOnServer`).
    func forgetServerKnowledge() {
        foldersLock.withLock {
            knownFolders = []
            originalsOnServer = [:]
        }
    }

    /// The names (with their checksums) in the original folder `folder` on the server: one
    /// PROPFIND (Depth 1) per folder and batch, however many workers ask at once.
    func originals(in folder: String) throws -> [String: [String]] {
        if let known = foldersLock.withLock({ originalsOnServer[folder] }) { return known }
        listingLock.lock()
        defer { listingLock.unlock() }
        if let known = foldersLock.withLock({ originalsOnServer[folder] }) { return known }
        var listed: [String: [String]] = [:]
        do {
            for child in try store.list(folder, properties: .withChecksums).children { listed[child.name] = child.checksums }
            foldersLock.withLock { _ = knownFolders.insert(folder) }
        } catch let error as DAVError where error.kind == .notFound {
            // Not there (yet, or any more): empty, and no folder above it is taken for granted
            // (the upload creates what is missing).
            foldersLock.withLock { knownFolders = knownFolders.filter { !(folder == $0 || folder.hasPrefix($0 + "/") || $0.hasPrefix(folder + "/")) } }
        }
        foldersLock.withLock { originalsOnServer[folder] = listed }
        return listed
    }

    /// Notes a name taken on the server (by this run's upload, or found by a 412).
    func noteOriginal(_ name: String, in folder: String, checksums: [String]) {
        foldersLock.withLock { originalsOnServer[folder]?[name] = checksums }
    }
}
