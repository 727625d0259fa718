import Foundation
import RemoteCache

/// A path inside incoming/: the folder it is in and the path relative to it ("" for incoming/
/// itself).
struct IncomingPlace {
    let folder: IncomingFolder
    let relative: String
    /// The path from the mount root.
    let path: String
}

/// incoming/: a local folder mounted at the root beside the server's tree, whose files belong
/// to the ingest pipeline (`IncomingFolder`). `incomingPlace` is the router: every operation
/// that takes a path asks it first and hands a path inside incoming/ to its counterpart here,
/// so the server side of each operation never sees one. Operations on open files are routed by
/// the handle instead (a `.local` handle is an incoming/ file).
extension FileSystem {
    /// Shows `folder` as incoming/ at the mount root. Call once, before mounting, after
    /// `enableWrites` (the folder is writable only on a writable mount).
    public func enableIncoming(_ folder: IncomingFolder) {
        incoming = folder
    }

    /// Where `path` is in incoming/, or nil when it is on the server's side (or the mount has no
    /// incoming/ folder).
    func incomingPlace(_ path: String) -> IncomingPlace? {
        guard let incoming else { return nil }
        if path == incoming.name { return IncomingPlace(folder: incoming, relative: "", path: path) }
        guard path.hasPrefix(incoming.name + "/") else { return nil }
        return IncomingPlace(folder: incoming, relative: String(path.dropFirst(incoming.name.count + 1)), path: path)
    }

    func entry(in place: IncomingPlace) -> RemoteEntry? {
        place.folder.entry(place.relative)
    }

    func listing(in place: IncomingPlace) throws(FSError) -> FolderListing {
        try place.folder.listing(place.relative, mountPath: place.path)
    }

    /// The root's listing with incoming/ in it, over a server folder of the same name if there
    /// is one.
    func withIncoming(_ root: FolderListing) -> FolderListing {
        guard let incoming, let folder = incoming.entry("") else { return root }
        return FolderListing(path: "", folder: root.folder,
                             children: root.children.filter { $0.name != incoming.name } + [folder], fetchedAt: root.fetchedAt)
    }

    // MARK: Namespace

    func mkdir(in place: IncomingPlace) throws(FSError) -> Attributes {
        try place.folder.mkdir(place.relative)
        guard let entry = entry(in: place) else { throw .notFound }
        return attributes(entry, inode: inodes.lookup(place.path))
    }

    func unlink(in place: IncomingPlace) throws(FSError) {
        guard !place.relative.isEmpty else { throw .isDirectory }
        guard let current = entry(in: place) else { throw .notFound }
        if current.isDirectory { throw .isDirectory }
        try place.folder.unlink(place.relative)
        inodes.detach(place.path)
    }

    func rmdir(in place: IncomingPlace) throws(FSError) {
        // The folder itself is part of the mount, not a folder of the user's.
        guard !place.relative.isEmpty else { throw .busy }
        try place.folder.rmdir(place.relative)
        inodes.detach(place.path)
    }

    /// A rename with either end in incoming/: within it, done there; across its edge, EXDEV
    /// (its files are local until ingested), so `mv` copies and the copy is ingested. Returns
    /// false when neither end is in incoming/.
    func renameInIncoming(from: String, to: String, noReplace: Bool) throws(FSError) -> Bool {
        let source = incomingPlace(from), target = incomingPlace(to)
        if source == nil && target == nil { return false }
        if source?.relative == "" || target?.relative == "" { throw .busy }
        guard let source, let target else { throw .crossDevice }
        if from == to { return true }
        guard entry(in: source) != nil else { throw .notFound }
        try source.folder.rename(source.relative, to: target.relative, noReplace: noReplace)
        inodes.rename(from, to: to)
        return true
    }

    // MARK: Files

    func open(in place: IncomingPlace, writable: Bool, truncate: Bool) throws(FSError) -> UInt64 {
        guard let entry = entry(in: place) else { throw .notFound }
        if entry.isDirectory { throw .isDirectory }
        if writable { _ = try requireWritable() }
        let fd = try place.folder.open(place.relative, writable: writable, create: false, exclusive: false, truncate: truncate)
        return handles.add(.local(fd: fd, path: place.relative, writable: writable))
    }

    func create(in place: IncomingPlace, exclusive: Bool) throws(FSError) -> (Attributes, UInt64) {
        let fd = try place.folder.open(place.relative, writable: true, create: true, exclusive: exclusive, truncate: true)
        let handle = handles.add(.local(fd: fd, path: place.relative, writable: true))
        guard let entry = entry(in: place) else { throw .notFound }
        return (attributes(entry, inode: inodes.lookup(place.path)), handle)
    }

    /// truncate and utimens; modes and owners of incoming/ files are not kept (they are the
    /// pipeline's, and leave with it).
    func setattr(in place: IncomingPlace, inode: UInt64, size: Int64?, mtime: Int64?) throws(FSError) -> Attributes {
        if size != nil || mtime != nil { _ = try requireWritable() }
        guard let current = entry(in: place) else { throw .notFound }
        if current.isDirectory && size != nil { throw .isDirectory }
        try place.folder.setattr(place.relative, size: size, mtime: mtime)
        guard let updated = entry(in: place) else { throw .notFound }
        return attributes(updated, inode: inode)
    }

    // MARK: Extended attributes

    /// The pipeline's view of a file in incoming/ (`user.ncfs.status`, …). Folders — incoming/
    /// itself and its subfolders — are no items and carry none (the pipeline would call them
    /// "waiting").
    func xattrs(in place: IncomingPlace) throws(FSError) -> [String: String] {
        guard let entry = entry(in: place) else { throw .notFound }
        return entry.isDirectory ? [:] : place.folder.observer?.attributes(place.relative) ?? [:]
    }
}
