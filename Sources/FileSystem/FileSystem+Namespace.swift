import Foundation
import Glibc
import RemoteCache
import WebDAV

/// mkdir, unlink, rmdir and rename: done on the server at once (MKCOL, DELETE, MOVE), except
/// for staged files the server has not seen yet, which only change here; their uploads are
/// held while their names change.
extension FileSystem {
    public func mkdir(parent: UInt64, name: String, mode: UInt32? = nil, caller: Caller? = nil) throws(FSError) -> Attributes {
        _ = try requireWritable()
        let parentPath = try path(of: parent)
        let path = FolderListing.join(parentPath, name)
        if let place = incomingPlace(path) { return try mkdir(in: place) }
        if try entry(at: path) != nil { throw .exists }
        try checkName(name, in: parentPath)
        try remote { try cache.client.mkcol(path) }
        let folder = RemoteEntry(name: name, isDirectory: true, size: 0, mtime: Int64(Date().timeIntervalSince1970), etag: "",
                                 fileID: 0, permissions: Permissions(rawValue: 0))
        overlay.present(path, folder)
        created(path, isDirectory: true, mode: mode, caller: caller)
        // A new folder is empty: no need to ask.
        cache.store(FolderListing(path: path, folder: folder, children: []))
        return attributes(folder, inode: inodes.lookup(path))
    }

    public func unlink(parent: UInt64, name: String) throws(FSError) {
        let writeBack = try requireWritable()
        let path = FolderListing.join(try path(of: parent), name)
        if let place = incomingPlace(path) { return try unlink(in: place) }
        guard let current = try entry(at: path) else { throw .notFound }
        if current.isDirectory { throw .isDirectory }
        let staged = writeBack.staged(path)
        try writeBack.holdingUploads(of: staged.map { [$0] } ?? []) { () throws(FSError) in
            var onServer = staged == nil
            if let staged {
                staged.lock.lock()
                // (or may be: an attempt whose answer was lost may have stored it)
                onServer = staged.base != .new || staged.uploadedGeneration > 0 || !staged.unanswered.isEmpty
                staged.lock.unlock()
                try writeBack.remove(path)
            }
            if onServer {
                do { try cache.client.delete(path) } catch let error as DAVError where error.kind == .notFound && staged != nil {
                    // The staged file's server copy was already gone.
                } catch {
                    throw FSError.wrap(error)
                }
            }
            overlay.absent(path)
            attributeStore.remove(path, tree: false)
            folderChanged(containing: path)
            inodes.detach(path)
        }
    }

    public func rmdir(parent: UInt64, name: String) throws(FSError) {
        _ = try requireWritable()
        let path = FolderListing.join(try path(of: parent), name)
        if let place = incomingPlace(path) { return try rmdir(in: place) }
        guard let current = try entry(at: path) else { throw .notFound }
        guard current.isDirectory else { throw .notDirectory }
        guard try listing(at: path).children.isEmpty else { throw .notEmpty }
        try remote { try cache.client.delete(path) }
        overlay.absent(path)
        cache.invalidate(path)
        attributeStore.remove(path, tree: true)
        folderChanged(containing: path)
        inodes.detach(path)
    }

    /// rename(2): MOVE on the server for what it has; a staged file the server does not have
    /// yet is only renamed here (its upload goes to the new name, and never to the old one).
    public func rename(parent: UInt64, name: String, newParent: UInt64, newName: String, noReplace: Bool) throws(FSError) {
        let writeBack = try requireWritable()
        let from = FolderListing.join(try path(of: parent), name)
        let toParent = try path(of: newParent)
        let to = FolderListing.join(toParent, newName)
        if try renameInIncoming(from: from, to: to, noReplace: noReplace) { return }
        guard let source = try entry(at: from) else { throw .notFound }
        if from == to { return }
        if to.hasPrefix(from + "/") { throw .invalid }
        let target = try entry(at: to)
        if let target {
            if noReplace { throw .exists }
            if target.isDirectory && !source.isDirectory { throw .isDirectory }
            if !target.isDirectory && source.isDirectory { throw .notDirectory }
            if target.isDirectory, try !listing(at: to).children.isEmpty { throw .notEmpty }
        } else {
            try checkName(newName, in: toParent)
        }

        // No PROPPATCH of the attribute sync may run across the MOVE: one sent to an old path
        // after it answers 404 and drops the record, one sent before it may be lost with the
        // folder's dead properties; after the move the records are at their new paths.
        let requests = attributeSync?.requestLock
        requests?.lock()
        defer { requests?.unlock() }
        let staged = writeBack.staged(from)
        let targetStaged = writeBack.staged(to)
        let carried = source.isDirectory ? propertiesBelow(from) : []
        try writeBack.holdingUploads(of: [staged, targetStaged].compactMap { $0 }) { () throws(FSError) in
            try moveName(from: from, to: to, newName: newName, source: source, target: target,
                         staged: staged, targetStaged: targetStaged, writeBack: writeBack)
        }
        inodes.rename(from, to: to)
        renamedAttributes(from: from, to: to, isDirectory: source.isDirectory, carried: carried)
    }

    /// The server and local half of a rename, with no upload of either name running.
    private func moveName(from: String, to: String, newName: String, source: RemoteEntry, target: RemoteEntry?,
                          staged: StagedFile?, targetStaged: StagedFile?, writeBack: WriteBack) throws(FSError) {
        var localOnly = false
        var unansweredCopy = false
        if let staged {
            staged.lock.lock()
            localOnly = staged.base == .new && staged.uploadedGeneration == 0
            unansweredCopy = !staged.unanswered.isEmpty
            staged.lock.unlock()
        }
        if localOnly, let staged {
            if unansweredCopy {
                // An attempt whose answer was lost may have stored it under the old name: that
                // copy moves along (where it is there), or it would stay behind; the retry at
                // the new name then recognises it as its own (`WriteBack.unansweredVersion`).
                do {
                    _ = try cache.client.move(from, to: to, overwrite: true)
                } catch let error as DAVError where error.kind == .notFound {
                    // It was not stored.
                } catch {
                    throw FSError.wrap(error)
                }
            }
            // The server has never seen this file: a rename here is all it takes. It will
            // replace what the server has at the new name (based on that version's ETag).
            var base: StagedFile.Base = .new
            if let targetStaged {
                targetStaged.lock.lock(); base = targetStaged.base; targetStaged.lock.unlock()
            } else if let target {
                base = target.etag.isEmpty ? .unconditional : .etag(target.etag)
            }
            try writeBack.rename(from: from, to: to, base: base)
            overlay.absent(from)
            overlay.set(to, .staged(staged))
        } else {
            if target != nil, targetStaged != nil {
                // The name's pending upload is replaced by what moves there.
                try writeBack.remove(to)
            }
            let moved = try remote { try cache.client.move(from, to: to, overwrite: true) }
            if source.isDirectory || staged != nil {
                try writeBack.rename(from: from, to: to, base: staged == nil ? nil : moved.etag.map { .etag($0) })
            }
            overlay.moveTree(from: from, to: to)
            overlay.absent(from)
            if let staged {
                overlay.set(to, .staged(staged))
            } else {
                var entry = source
                entry.name = newName
                if let etag = moved.etag { entry.etag = etag }
                overlay.present(to, entry)
            }
            if source.isDirectory {
                cache.invalidate(from)
                cache.invalidate(to)
            }
        }
    }
}
