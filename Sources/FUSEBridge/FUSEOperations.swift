internal import CFuse3
import Foundation
import FileSystem

/// The `fuse_lowlevel_ops` table. Each callback copies its arguments (names, `fi->fh`) into
/// Swift values, hands the work to the worker pool and returns; the worker answers. No logic
/// lives here: every decision is the FileSystem's.
enum FUSEOperations {
    static func bridge(_ req: fuse_req_t?) -> FUSEMount {
        Unmanaged<FUSEMount>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Runs `body` on a worker with the FileSystem; a thrown FSError becomes the reply.
    static func dispatch(_ req: fuse_req_t?, _ body: @escaping @Sendable (FileSystem, Request) throws(FSError) -> Void) {
        let mount = bridge(req)
        let request = Request(raw: req!)
        let fs = mount.fileSystem
        mount.workers.submit {
            do throws(FSError) { try body(fs, request) } catch { request.reply(error: error) }
        }
    }

    static func readOnly(_ req: fuse_req_t?) { fuse_reply_err(req, EROFS) }

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
            // kernel saves two copies of every byte read.
            for capability in [FUSE_CAP_SPLICE_WRITE, FUSE_CAP_SPLICE_MOVE] where conn.pointee.capable & UInt32(capability) != 0 {
                conn.pointee.want |= UInt32(capability)
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
        ops.getattr = { req, ino, _ in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in r.reply(attributes: try fs.getattr(ino), timeout: fs.kernelTimeout) }
        }
        ops.opendir = { req, ino, _ in
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                var fi = fuse_file_info()
                fi.fh = try fs.opendir(ino)
                fuse_reply_open(r.raw, &fi)
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
            FUSEOperations.dispatch(req) { fs, r throws(FSError) in
                let (fh, keep) = try fs.open(ino, writable: writable)
                r.reply(open: fh, keepCache: keep)
            }
        }
        ops.read = { req, _, size, off, fi in
            let fh = fi!.pointee.fh
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
        // Writes: the mount is `ro`, so the kernel refuses most of these itself; the handlers
        // make the answer EROFS even if it asks.
        ops.mkdir = { req, _, _, _ in FUSEOperations.readOnly(req) }
        ops.mknod = { req, _, _, _, _ in FUSEOperations.readOnly(req) }
        ops.unlink = { req, _, _ in FUSEOperations.readOnly(req) }
        ops.rmdir = { req, _, _ in FUSEOperations.readOnly(req) }
        ops.rename = { req, _, _, _, _, _ in FUSEOperations.readOnly(req) }
        ops.setattr = { req, _, _, _, _ in FUSEOperations.readOnly(req) }
        ops.create = { req, _, _, _, _ in FUSEOperations.readOnly(req) }
        ops.write = { req, _, _, _, _, _ in FUSEOperations.readOnly(req) }
        ops.symlink = { req, _, _, _ in FUSEOperations.readOnly(req) }
        ops.link = { req, _, _, _ in FUSEOperations.readOnly(req) }
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
        _ = fuse_reply_buf(r.raw, buffer, used)
    }
}
