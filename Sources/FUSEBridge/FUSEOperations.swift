internal import CFuse3
import Foundation
import FileSystem
import HTTPTransport

/// The `fuse_lowlevel_ops` table. Each callback copies its arguments (names, `fi->fh`) into
/// Swift values, hands the work to the worker pool and returns; the worker answers. No logic
/// lives here: every decision is the FileSystem's.
enum FUSEOperations {
    static func bridge(_ req: fuse_req_t?) -> FUSEMount {
        Unmanaged<FUSEMount>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Runs `body` on a worker with the FileSystem; a thrown FSError becomes the reply.
    ///
    /// The request is interruptible: when its caller gets a signal, the kernel sends an
    /// INTERRUPT and libfuse calls `interrupted`, which cancels the request's `Cancellation`;
    /// the server exchange it waits for ends within about a second and the caller gets EINTR
    /// (a caller killed by the signal can only die once the request is answered). The same
    /// `Cancellation` carries the mount's request deadline (`Options.requestTimeout`).
    static func dispatch(_ req: fuse_req_t?, _ body: @escaping @Sendable (FileSystem, Request) throws(FSError) -> Void) {
        let mount = bridge(req)
        let cancellation = Cancellation(timeout: .milliseconds(Int(mount.options.requestTimeout * 1000)))
        // Retained for libfuse until the reply: every reply first unregisters the callback
        // (`Request.detach`), which waits for a call in progress, so none runs after `release`.
        let token = Unmanaged.passRetained(cancellation)
        fuse_req_interrupt_func(req, interrupted, token.toOpaque())
        let request = Request(raw: req!)
        let fs = mount.fileSystem
        mount.requestStarted(cancellation)
        mount.workers.submit {
            defer {
                token.release()
                mount.requestEnded(cancellation)
            }
            do throws(FSError) {
                try cancellation.run { () throws(FSError) in try body(fs, request) }
            } catch {
                // Whatever the wait ended with (a cancelled transfer is a transport error):
                // the caller was interrupted.
                if cancellation.isCancelled { request.replyInterrupted() } else { request.reply(error: error) }
            }
        }
    }

    /// The process that sent `req` (its fsuid and fsgid, what the kernel checks access with).
    static func caller(_ req: fuse_req_t?) -> FileSystem.Caller {
        guard let ctx = fuse_req_ctx(req) else { return FileSystem.Caller(uid: getuid(), gid: getgid()) }
        return FileSystem.Caller(uid: ctx.pointee.uid, gid: ctx.pointee.gid)
    }

    static func nanoseconds(_ t: timespec) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) }

    /// libfuse's interrupt callback (on a loop thread, under the request's lock).
    static let interrupted: fuse_interrupt_func_t = { _, data in
        guard let data else { return }
        Unmanaged<Cancellation>.fromOpaque(data).takeUnretainedValue().cancel()
    }

    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { _, conn in
            guard let conn else { return }
            // Always readdirplus (not "auto"): one listing answers every child's lookup, so
            // `ls -l` costs no per-entry round trip.
            if conn.pointee.capable & UInt32(FUSE_CAP_READDIRPLUS) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_READDIRPLUS)
                conn.pointee.want &= ~UInt32(FUSE_CAP_READDIRPLUS_AUTO)
            }
            // Reads are answered from the content cache's files: splicing them into the
            // kernel saves two copies of every byte read. (Not SPLICE_MOVE: see shim.h.)
            if conn.pointee.capable & UInt32(FUSE_CAP_SPLICE_WRITE) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_SPLICE_WRITE)
            }
        }
        ops.lookup = { req, parent, name in
            let name = String(cString: name!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                do throws(FSError) {
                    r.reply(entry: try fs.lookup(parent: parent, name: name), timeout: fs.kernelTimeout)
                } catch {
                    guard case .notFound = error else { throw error }
                    r.replyNegative(timeout: fs.kernelTimeout)
                }
            }
        }
        ops.forget = { req, ino, nlookup in
            FUSEOperations.bridge(req).fileSystem.forget(ino, count: nlookup)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let fs = FUSEOperations.bridge(req).fileSystem
            for i in 0..<count { fs.forget(forgets![i].ino, count: forgets![i].nlookup) }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, fi in
            let fh = fi.map { $0.pointee.fh }
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(attributes: try fs.getattr(ino, handle: fh), timeout: fs.kernelTimeout) }
        }
        ops.opendir = { req, ino, _ in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                r.reply(openDirectory: try fs.opendir(ino))
            }
        }
        ops.readdir = { req, _, size, off, fi in
            let fh = fi!.pointee.fh
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in try FUSEOperations.readdir(fs, r, fh: fh, size: size, offset: Int64(off), plus: false) }
        }
        ops.readdirplus = { req, _, size, off, fi in
            let fh = fi!.pointee.fh
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in try FUSEOperations.readdir(fs, r, fh: fh, size: size, offset: Int64(off), plus: true) }
        }
        ops.releasedir = { req, _, fi in
            FUSEOperations.bridge(req).fileSystem.releasedir(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.open = { req, ino, fi in
            let writable = fi!.pointee.flags & O_ACCMODE != O_RDONLY
            let truncate = fi!.pointee.flags & O_TRUNC != 0
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                let (fh, keep) = try fs.open(ino, writable: writable, truncate: truncate)
                r.reply(open: fh, keepCache: keep)
            }
        }
        ops.read = { req, _, size, off, fi in
            let fh = fi!.pointee.fh
            // Bytes already local (read-ahead ran in front) are answered on this thread.
            if let data = FUSEOperations.bridge(req).fileSystem.readDataIfReady(fh, offset: Int64(off), count: size) {
                Request(raw: req!).reply(read: data)
                return
            }
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(read: try fs.readData(fh, offset: Int64(off), count: size)) }
        }
        ops.release = { req, _, fi in
            FUSEOperations.bridge(req).fileSystem.release(fi!.pointee.fh)
            fuse_reply_err(req, 0)
        }
        ops.statfs = { req, _ in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(statfs: try fs.statfs()) }
        }
        ops.getxattr = { req, ino, name, size in
            let name = String(cString: name!)
            // `ls -l` asks every entry for security.selinux and system.posix_acl_access. Those
            // namespaces are unsupported here (ENOTSUP), which makes coreutils stop asking for the
            // rest of the filesystem (it remembers unsupported devices; ENODATA it asks again for
            // every entry: 2002 getxattr calls for 1000 files). Other names ncfs never has get
            // ENODATA. Both answered right here, without a worker hop.
            if name.hasPrefix("security.") || name.hasPrefix("system.") || name.hasPrefix("trusted.") {
                fuse_reply_err(req, ENOTSUP)
                return
            }
            guard FileSystem.xattrNames.contains(name) || name.hasPrefix(FileSystem.incomingXattrPrefix) else {
                fuse_reply_err(req, ENODATA)
                return
            }
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(xattr: try fs.getxattr(ino, name: name, capacity: size)) }
        }
        ops.listxattr = { req, ino, size in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(xattr: try fs.listxattr(ino, capacity: size)) }
        }
        ops.setxattr = { req, ino, name, _, _, _ in
            let name = String(cString: name!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in try fs.setxattr(ino, name: name) }
        }
        ops.removexattr = { req, ino, name in
            let name = String(cString: name!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in try fs.setxattr(ino, name: name) }
        }
        ops.create = { req, parent, name, mode, fi in
            let name = String(cString: name!)
            let exclusive = fi!.pointee.flags & O_EXCL != 0
            let caller = FUSEOperations.caller(req)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                let (attributes, fh) = try fs.create(parent: parent, name: name, exclusive: exclusive, mode: UInt32(mode), caller: caller)
                r.reply(created: attributes, handle: fh, timeout: fs.kernelTimeout)
            }
        }
        // Writes and flushes are answered on the FUSE thread: they touch only local files (a
        // staged copy or incoming/) and the journal, never the network, so a hop to the worker
        // pool would only add two thread switches (and, for a write, a copy of its buffer) to
        // every one of them. A flush that waits (an fsync, the journal's lock) holds one loop
        // thread; libfuse starts another for the next request.
        ops.write = { req, _, buf, size, off, fi in
            let fh = fi!.pointee.fh
            let request = Request(raw: req!)
            do throws(FSError) {
                let written = try FUSEOperations.bridge(req).fileSystem.write(fh, offset: Int64(off),
                                                                               bytes: UnsafeRawBufferPointer(start: buf, count: size))
                fuse_reply_write(req, written)
            } catch {
                request.reply(error: error)
            }
        }
        ops.flush = { req, _, fi in
            let fh = fi!.pointee.fh
            let request = Request(raw: req!)
            do throws(FSError) {
                try FUSEOperations.bridge(req).fileSystem.flush(fh)
                request.replyOK()
            } catch {
                request.reply(error: error)
            }
        }
        ops.fsync = { req, _, _, fi in
            let fh = fi!.pointee.fh
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                try fs.fsync(fh)
                r.replyOK()
            }
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            let st = attr!.pointee
            let now = FileSystem.nanosecondsNow()
            // The kernel resolved UTIME_NOW to the _NOW flags and UTIME_OMIT to no flag at all.
            var changes = FileSystem.AttributeChanges()
            if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = Int64(st.st_size) }
            if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = UInt32(st.st_mode) & 0o7777 }
            if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = st.st_uid }
            if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = st.st_gid }
            if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { changes.mtime = now }
            else if toSet & FUSE_SET_ATTR_MTIME != 0 { changes.mtime = FUSEOperations.nanoseconds(st.st_mtim) }
            if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { changes.atime = now }
            else if toSet & FUSE_SET_ATTR_ATIME != 0 { changes.atime = FUSEOperations.nanoseconds(st.st_atim) }
            let fh = fi.map { $0.pointee.fh }
            let caller = FUSEOperations.caller(req)
            let asked = changes
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                r.reply(attributes: try fs.setattr(ino, asked, handle: fh, caller: caller), timeout: fs.kernelTimeout)
            }
        }
        ops.mkdir = { req, parent, name, mode in
            let name = String(cString: name!)
            let caller = FUSEOperations.caller(req)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                r.reply(entry: try fs.mkdir(parent: parent, name: name, mode: UInt32(mode), caller: caller), timeout: fs.kernelTimeout)
            }
        }
        ops.unlink = { req, parent, name in
            let name = String(cString: name!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                try fs.unlink(parent: parent, name: name)
                r.replyOK()
            }
        }
        ops.rmdir = { req, parent, name in
            let name = String(cString: name!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                try fs.rmdir(parent: parent, name: name)
                r.replyOK()
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            let name = String(cString: name!), newName = String(cString: newName!)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                // renameat2 flags (linux/fs.h): RENAME_NOREPLACE 1, RENAME_EXCHANGE 2 (which
                // WebDAV cannot do).
                if flags & 2 != 0 { throw .invalid }
                try fs.rename(parent: parent, name: name, newParent: newParent, newName: newName, noReplace: flags & 1 != 0)
                r.replyOK()
            }
        }
        // A regular file by mknod is a create; devices, FIFOs and sockets cannot exist on the server.
        ops.mknod = { req, parent, name, mode, _ in
            let name = String(cString: name!)
            let regular = mode & S_IFMT == S_IFREG
            let caller = FUSEOperations.caller(req)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                guard regular else { throw .notPermitted }
                let (attributes, fh) = try fs.create(parent: parent, name: name, exclusive: true, mode: UInt32(mode), caller: caller)
                try fs.flush(fh)
                fs.release(fh)
                r.reply(entry: attributes, timeout: fs.kernelTimeout)
            }
        }
        // Symbolic links are small files marked as links (FileSystem+Posix).
        ops.symlink = { req, link, parent, name in
            let target = String(cString: link!), name = String(cString: name!)
            let caller = FUSEOperations.caller(req)
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                r.reply(entry: try fs.symlink(parent: parent, name: name, target: target, caller: caller), timeout: fs.kernelTimeout)
            }
        }
        ops.readlink = { req, ino in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(link: try fs.readlink(ino)) }
        }
        // Nextcloud has no hard links: one file, one name.
        ops.link = { req, _, _, _ in fuse_reply_err(req, EPERM) }
        return ops
    }

    /// Fills one reply buffer of at most `size` bytes with entries from `offset` on.
    static func readdir(_ fs: FileSystem, _ r: Request, fh: UInt64, size: Int, offset: Int64, plus: Bool) throws(FSError) {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(size, 1))
        defer { buffer.deallocate() }
        var used = 0
        let timeout = fs.kernelTimeout
        try fs.readdir(fh, offset: offset, plus: plus) { item in
            let needed: Int = item.name.withCString { name in
                if plus {
                    var entry = fuse_entry_param()
                    if let a = item.attributes {
                        entry.ino = a.inode
                        entry.attr = Request.stat(a)
                        entry.attr_timeout = timeout
                        entry.entry_timeout = timeout
                    } else {
                        // "." and "..": type and inode only; the kernel takes no lookup on them.
                        entry.attr.st_ino = UInt(item.inode)
                        entry.attr.st_mode = S_IFDIR
                    }
                    return fuse_add_direntry_plus(r.raw, buffer + used, size - used, name, &entry, off_t(item.nextOffset))
                }
                var st = Glibc.stat()
                st.st_ino = UInt(item.inode)
                st.st_mode = item.isDirectory ? S_IFDIR : S_IFREG
                return fuse_add_direntry(r.raw, buffer + used, size - used, name, &st, off_t(item.nextOffset))
            }
            guard needed <= size - used else { return false }
            used += needed
            return true
        }
        r.reply(buffer: buffer, count: used)
    }
}
