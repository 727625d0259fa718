import Foundation
import Glibc
import Journal
import RemoteCache
import WebDAV

/// POSIX attributes Nextcloud has no notion of: modes, owners, symbolic links and the times it
/// cannot keep (see docs/SEMANTICS.md, "POSIX cases").
///
/// Where each lives:
/// - mode and owner: set here, kept at once in the state folder (`AttributeStore`), and stored
///   on the server in the background (`AttributeSync`) as the dead property
///   `{https://ncfs.invalid/ns}posix`, which listings read back, so every mount of the store
///   sees them. An entry without the property gets the mount's defaults (`-o uid=,gid=,umask=`).
/// - symbolic links: a small file whose content is the target, marked by the same property
///   with the link type. Other Nextcloud clients see the small file; nothing on the server
///   ever follows it.
/// - times: Nextcloud keeps whole seconds of mtime and nothing else. The nanoseconds, the
///   atime set by `utimensat` and the ctime are kept locally; a file changed elsewhere (its
///   seconds no longer match) shows the server's time again.
///
/// Access checks are the kernel's (`default_permissions`, always on): it compares these modes
/// with the caller. Nextcloud itself knows one user per mount, the one whose credentials the
/// mount uses, so the modes separate local users only.
extension FileSystem {
    /// The process asking (from the FUSE request), for ownership of what it creates and the
    /// owner checks of chmod and chown.
    public struct Caller: Sendable {
        public var uid: UInt32
        public var gid: UInt32
        public init(uid: UInt32, gid: UInt32) { self.uid = uid; self.gid = gid }
    }

    /// What one setattr changes; nil leaves an attribute as it is (`UTIME_OMIT`).
    public struct AttributeChanges: Sendable {
        public var size: Int64?
        /// Permission bits (`07777`); the type never changes.
        public var mode: UInt32?
        public var uid: UInt32?
        public var gid: UInt32?
        /// Nanoseconds since 1970 (`UTIME_NOW` is resolved by the caller to the current time).
        public var mtime: Int64?
        public var atime: Int64?
        public init(size: Int64? = nil, mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, mtime: Int64? = nil, atime: Int64? = nil) {
            self.size = size; self.mode = mode; self.uid = uid; self.gid = gid; self.mtime = mtime; self.atime = atime
        }
    }

    /// Opens `attributes.sqlite` in the state folder and starts the background sync, which
    /// waits on `clock` (write-back's). Called by `enableWrites`.
    func enableAttributes(directory: URL, client: any RemoteStore, clock: any TimeSource) throws {
        let store = try AttributeStore(directory: directory)
        let sync = AttributeSync(store: store, client: client, clock: clock, logger: logger) { [weak self] path in
            self?.awaitsFirstUpload(path) ?? false
        }
        attributeStore = store
        attributeSync = sync
        sync.start()
    }

    /// Whether `path` is a new file the server has never had (its first upload has not
    /// finished): a property cannot be attached to it yet. The same test `unlink` makes.
    func awaitsFirstUpload(_ path: String) -> Bool {
        guard let file = writeBack?.staged(path) else { return false }
        file.lock.lock(); defer { file.lock.unlock() }
        return file.base == .new && file.uploadedGeneration == 0
    }

    /// Stores the mode and owner changes still pending (waiting up to `timeout`) and stops
    /// the sync; returns how many are left for the next mount. Call after `drainUploads`.
    public func drainAttributes(timeout: Double) -> Int {
        let left = attributeSync?.drain(timeout: timeout) ?? 0
        attributeStore.close()
        return left
    }

    /// The wall clock in nanoseconds since 1970.
    public static func nanosecondsNow() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// What an entry without a stored mode and owner shows.
    func defaultPosix(isDirectory: Bool) -> PosixAttributes {
        PosixAttributes(mode: isDirectory ? PosixAttributes.directory | (0o777 & ~options.umask) : PosixAttributes.regular | (0o666 & ~options.umask),
                        uid: options.uid, gid: options.gid)
    }

    /// The mode and owner of `entry` at `path`: this mount's own while the server may not have
    /// them yet, else the server's, else the defaults.
    func posix(of entry: RemoteEntry, path: String?, record: AttributeStore.Record?) -> PosixAttributes {
        let server = serverPosix(entry, path: path)
        if let local = record?.posix, let path {
            if let server, server == local, record?.pending == false {
                attributeStore.confirm(path, server)
            }
            return local
        }
        return server ?? defaultPosix(isDirectory: entry.isDirectory)
    }

    /// The server's property for `entry`: its own, or, for an entry this mount made of a file
    /// it is rewriting or has just uploaded (those carry no property), the one the cached
    /// listing has for the same file. Without this, a 0600 file would show (and the kernel
    /// would check) the default mode while its new content waits for upload.
    func serverPosix(_ entry: RemoteEntry, path: String?) -> PosixAttributes? {
        if let posix = entry.posix { return posix }
        guard entry.fileID != 0, !entry.isDirectory, let path, !path.isEmpty else { return nil }
        let (parent, name) = MetadataCache.split(path)
        guard let listed = cache.cachedListing(parent)?.child(named: name), listed.fileID == entry.fileID else { return nil }
        return listed.posix
    }

    /// `Attributes` of `entry`, with mode, owner, link type and times resolved as the type's
    /// comment says.
    func attributes(_ entry: RemoteEntry, inode: UInt64) -> Attributes {
        let path = entry.posix == nil || !attributeStore.isEmpty ? inodes.path(of: inode) : nil
        let record = path.flatMap { attributeStore.record($0) }
        let posix = posix(of: entry, path: path, record: record)
        let size = entry.isDirectory && options.zeroFolderSizes ? 0 : entry.size
        var mtime = entry.mtime * 1_000_000_000
        // The local time counts while it is the server's to the second (set here, with the
        // nanoseconds the server cannot keep) or newer than it (a folder whose entries changed
        // here before the server's listing shows it).
        if let local = record?.mtime, local.floorDivided(by: 1_000_000_000) == entry.mtime || local > mtime { mtime = local }
        let link = posix.isSymbolicLink && !entry.isDirectory
        // A folder's link count is 1, "not counted" (as btrfs reports it): 2 + subfolders is
        // what fts (FileManager, `du`, `rm -r` of some tools) would otherwise trust to stop
        // looking for subfolders, and 2 would tell it there are none.
        return Attributes(inode: inode, isDirectory: entry.isDirectory, size: size,
                          blocks: entry.isDirectory ? 0 : (size + 511) / 512, mtime: entry.mtime,
                          permissions: UInt16(link ? 0o777 : posix.permissions), links: 1,
                          uid: posix.uid, gid: posix.gid, isSymbolicLink: link, mtimeNanoseconds: mtime,
                          atimeNanoseconds: record?.atime ?? mtime, ctimeNanoseconds: max(record?.ctime ?? 0, mtime))
    }

    // MARK: Changes

    /// setattr: size and mtime as `setattr(_:size:mtime:handle:)` does them (the server gets
    /// whole seconds), mode, owner and the remaining times recorded here (the server gets mode
    /// and owner in the background). Every change moves ctime. With a `caller` that is not
    /// root, chmod needs the caller to own the file and chown to another user is refused
    /// (EPERM), as on a local file system; the kernel checks the same before asking.
    public func setattr(_ inode: UInt64, _ changes: AttributeChanges, handle: UInt64?, caller: Caller? = nil) throws(FSError) -> Attributes {
        let path = try path(of: inode)
        let seconds = changes.mtime.map { $0.floorDivided(by: 1_000_000_000) }
        if incomingPlace(path) != nil {
            return try setattr(inode, size: changes.size, mtime: seconds, handle: handle)
        }
        guard let current = try entry(at: path) else { throw .notFound }
        let record = attributeStore.record(path)
        let before = posix(of: current, path: path, record: record)
        var after = before
        if let mode = changes.mode { after.mode = before.type | (mode & 0o7777) }
        if let uid = changes.uid { after.uid = uid }
        if let gid = changes.gid { after.gid = gid }
        if let caller, caller.uid != 0, after != before {
            if caller.uid != before.uid || after.uid != before.uid { throw .notPermitted }
        }
        let touchesPosix = after != before || changes.atime != nil || changes.mtime.map { $0 % 1_000_000_000 != 0 } == true
        if touchesPosix { _ = try requireWritable() }
        var updated = current
        if changes.size != nil || seconds != nil {
            _ = try setattr(inode, size: changes.size, mtime: seconds, handle: handle)
            updated = try entry(at: path) ?? current
            if let seconds, current.isDirectory, updated.mtime != seconds {
                // The server has it now; the cached listing of the parent does not.
                updated.mtime = seconds
                overlay.present(path, updated)
            }
        }
        let server = serverPosix(current, path: path) ?? defaultPosix(isDirectory: current.isDirectory)
        // Back to what the server has: nothing to store, unless an earlier value may be on its
        // way there (a new file's never is before its first upload: rsync's 0600 temporary
        // file chmodded to 0644 costs no request).
        let unsent = record?.pending != true || awaitsFirstUpload(path)
        attributeStore.update(path) { r in
            if after != before {
                r.posix = after == server && unsent ? nil : after
                r.pending = r.posix != nil
            }
            if let mtime = changes.mtime { r.mtime = mtime } else if changes.size != nil { r.mtime = nil }
            if let atime = changes.atime { r.atime = atime }
            r.ctime = FileSystem.nanosecondsNow()
        }
        if after != before { attributeSync?.wake() }
        return attributes(updated, inode: inode)
    }

    /// A file or folder was just created at `path` with `mode` by `caller`: recorded when that
    /// differs from the defaults (and any earlier record of the name is forgotten).
    func created(_ path: String, isDirectory: Bool, mode: UInt32?, caller: Caller?) {
        attributeStore.remove(path, tree: isDirectory)
        folderChanged(containing: path)
        let defaults = defaultPosix(isDirectory: isDirectory)
        var posix = defaults
        if let mode { posix.mode = defaults.type | (mode & 0o7777) }
        if let caller { posix.uid = caller.uid; posix.gid = caller.gid }
        guard posix != defaults else { return }
        attributeStore.update(path) { r in r.posix = posix; r.pending = true }
        attributeSync?.wake()
    }

    /// A rename moved `from` to `to`: the local records follow, and the moved entry's ctime
    /// moves (as ext4's does), and so do both folders' mtime and ctime.
    ///
    /// A folder's MOVE on Nextcloud 32 keeps the dead properties of the folder itself only
    /// (`CustomPropertiesBackend::move` rewrites the one path): every entry below it loses
    /// its ncfs property on the server. So the properties `carried` (what the cached listings
    /// below `from` showed before the move, see `propertiesBelow`) and the local records below
    /// it are stored again at their new paths. Entries below it that were never listed here
    /// lose theirs: the mount cannot know them without listing the whole tree.
    func renamedAttributes(from: String, to: String, isDirectory: Bool, carried: [(path: String, posix: PosixAttributes)] = []) {
        attributeStore.rename(from: from, to: to, tree: isDirectory)
        attributeStore.update(to) { $0.ctime = FileSystem.nanosecondsNow() }
        if isDirectory {
            for (path, posix) in carried {
                let moved = to + path.dropFirst(from.count)
                attributeStore.update(moved) { record in
                    if record.posix == nil { record.posix = posix }
                    record.pending = true
                }
            }
            attributeStore.markPending(below: to)
            attributeSync?.wake()
        }
        folderChanged(containing: from)
        folderChanged(containing: to)
    }

    /// The ncfs properties the cached listings below `folder` show, by path (at most 10,000:
    /// a rename must not walk an enormous cached tree).
    func propertiesBelow(_ folder: String) -> [(path: String, posix: PosixAttributes)] {
        var found: [(path: String, posix: PosixAttributes)] = []
        var folders = [folder]
        var seen = 0
        while let next = folders.popLast(), seen < 10_000 {
            guard let listing = cache.cachedListing(next) else { continue }
            for child in listing.children {
                seen += 1
                let path = listing.childPath(child.name)
                if let posix = child.posix { found.append((path, posix)) }
                if child.isDirectory { folders.append(path) }
            }
        }
        return found
    }

    /// An entry of the folder holding `path` was created, removed or renamed: the folder's
    /// mtime and ctime move now, as on a local file system, not only once the server's
    /// listing shows the change.
    func folderChanged(containing path: String) {
        let now = FileSystem.nanosecondsNow()
        attributeStore.update(MetadataCache.split(path).parent) { $0.mtime = now; $0.ctime = now }
    }

    // MARK: Symbolic links

    /// symlink(2): a small file holding `target`, created with one PUT (`If-None-Match: *`, so
    /// an existing name is never replaced) and marked as a link by one PROPPATCH. Done at once,
    /// not through write-back: `ln -s` returns only once the link is on the server. If the
    /// marker cannot be stored the file is removed again, so no half-made link remains.
    public func symlink(parent: UInt64, name: String, target: String, caller: Caller? = nil) throws(FSError) -> Attributes {
        _ = try requireWritable()
        let parentPath = try path(of: parent)
        let path = FolderListing.join(parentPath, name)
        // incoming/ holds photos for the pipeline, not links.
        if incomingPlace(path) != nil { throw .notPermitted }
        let bytes = Array(target.utf8)
        guard !bytes.isEmpty else { throw .notFound }
        guard bytes.count < 4096 else { throw .nameTooLong }
        if try entry(at: path) != nil { throw .exists }
        try checkName(name, in: parentPath)
        var posix = defaultPosix(isDirectory: false)
        posix.mode = PosixAttributes.symbolicLink | 0o777
        if let caller { posix.uid = caller.uid; posix.gid = caller.gid }
        let now = Int64(Date().timeIntervalSince1970)
        // No queued mode of a file that was at this name may land after the marker.
        let requests = attributeSync?.requestLock
        requests?.lock()
        defer { requests?.unlock() }
        let put: WebDAVClient.PutResult
        do {
            put = try cache.client.put(path, body: .bytes(bytes), mtime: Date(timeIntervalSince1970: TimeInterval(now)),
                                       conditions: WebDAVClient.WriteConditions(createOnly: true))
        } catch let error as DAVError where error.kind == .preconditionFailed {
            throw .exists
        } catch {
            throw FSError.wrap(error)
        }
        do {
            try cache.client.setPosixProperty(path, posix.property)
        } catch {
            try? cache.client.delete(path, permanently: true)
            throw FSError.wrap(error)
        }
        let entry = RemoteEntry(name: name, isDirectory: false, size: Int64(bytes.count), mtime: now, etag: put.etag ?? "",
                                fileID: put.fileID ?? 0, permissions: Permissions(rawValue: 0), posix: posix)
        attributeStore.remove(path, tree: false)
        folderChanged(containing: path)
        overlay.present(path, entry)
        linkTargets.set(path, etag: entry.etag, target: target)
        return attributes(entry, inode: inodes.lookup(path))
    }

    /// readlink(2): the link's content, fetched once per version of the file.
    public func readlink(_ inode: UInt64) throws(FSError) -> String {
        let path = try path(of: inode)
        guard let entry = try entry(at: path) else { throw .notFound }
        guard !entry.isDirectory, posix(of: entry, path: path, record: attributeStore.record(path)).isSymbolicLink else { throw .invalid }
        if let known = linkTargets.get(path, etag: entry.etag) { return known }
        let result = try remote { try reader.get(path, limit: 4096) }
        let target = String(decoding: result.bytes, as: UTF8.self)
        linkTargets.set(path, etag: result.etag ?? entry.etag, target: target)
        return target
    }
}

/// Link targets read or written by this mount, by path and ETag (a link rewritten by another
/// client has a new ETag and is read again).
final class LinkTargets: @unchecked Sendable {
    // @unchecked: `targets` is guarded by `lock`, a leaf lock.
    private let lock = NSLock()
    private var targets: [String: (etag: String, target: String)] = [:]

    func get(_ path: String, etag: String) -> String? {
        lock.lock(); defer { lock.unlock() }
        guard let known = targets[path], known.etag == etag, !etag.isEmpty else { return nil }
        return known.target
    }

    func set(_ path: String, etag: String, target: String) {
        lock.lock(); defer { lock.unlock() }
        // A few hundred bytes each; links are few. Bounded all the same.
        if targets.count >= 10_000 { targets.removeAll() }
        targets[path] = (etag, target)
    }
}

extension Int64 {
    /// Division rounding towards minus infinity (times before 1970 have negative nanoseconds).
    public func floorDivided(by d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
