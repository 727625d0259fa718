internal import CFuse3
import Foundation
import FileSystem

/// A FUSE request handed from a loop thread to a worker.
///
/// `@unchecked Sendable` is safe because libfuse allows a `fuse_req_t` to be answered from any
/// thread, and exactly one `fuse_reply_*` call frees it; each `Request` is created once per
/// callback, moved into one worker job, and every path of that job ends in exactly one reply
/// method below (`reply(error:)` or a result). The request's argument pointers (names,
/// `fuse_file_info`) die when the callback returns, so callbacks copy them before the hop.
///
/// Every reply first unregisters the request's interrupt callback (`detach`): libfuse may call
/// it until then, and the reply frees the request.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t

    /// Unregisters the interrupt callback, waiting for a call of it in progress (libfuse holds
    /// the request's lock around the call). Harmless when none was registered.
    private func detach() {
        fuse_req_interrupt_func(raw, nil, nil)
    }

    func reply(error: FSError) {
        detach()
        fuse_reply_err(raw, error.errno)
    }

    /// The caller was interrupted (a signal) while the request waited.
    func replyInterrupted() {
        detach()
        fuse_reply_err(raw, EINTR)
    }

    func replyOK() {
        detach()
        fuse_reply_err(raw, 0)
    }

    func reply(openDirectory handle: UInt64) {
        detach()
        var fi = fuse_file_info()
        fi.fh = handle
        fuse_reply_open(raw, &fi)
    }

    /// `count` bytes of a filled reply buffer (readdir).
    func reply(buffer: UnsafePointer<CChar>, count: Int) {
        detach()
        _ = fuse_reply_buf(raw, buffer, count)
    }

    func reply(entry attributes: Attributes, timeout: Double) {
        detach()
        var entry = fuse_entry_param()
        entry.ino = attributes.inode
        entry.attr = Request.stat(attributes)
        entry.attr_timeout = timeout
        entry.entry_timeout = timeout
        fuse_reply_entry(raw, &entry)
    }

    /// A negative entry (inode 0): the kernel caches "no such name" for `timeout`.
    func replyNegative(timeout: Double) {
        detach()
        var entry = fuse_entry_param()
        entry.entry_timeout = timeout
        fuse_reply_entry(raw, &entry)
    }

    func reply(attributes: Attributes, timeout: Double) {
        detach()
        var st = Request.stat(attributes)
        fuse_reply_attr(raw, &st, timeout)
    }

    func reply(open handle: UInt64, keepCache: Bool) {
        detach()
        var fi = fuse_file_info()
        fi.fh = handle
        fi.keep_cache = keepCache ? 1 : 0
        fuse_reply_open(raw, &fi)
    }

    /// A created and opened file: its entry (counted as a lookup) and handle.
    func reply(created attributes: Attributes, handle: UInt64, timeout: Double) {
        detach()
        var entry = fuse_entry_param()
        entry.ino = attributes.inode
        entry.attr = Request.stat(attributes)
        entry.attr_timeout = timeout
        entry.entry_timeout = timeout
        var fi = fuse_file_info()
        fi.fh = handle
        fuse_reply_create(raw, &entry, &fi)
    }

    func reply(link target: String) {
        detach()
        _ = target.withCString { fuse_reply_readlink(raw, $0) }
    }

    func reply(bytes: [UInt8]) {
        detach()
        bytes.withUnsafeBufferPointer { buffer in
            _ = fuse_reply_buf(raw, UnsafeRawPointer(buffer.baseAddress)?.assumingMemoryBound(to: CChar.self), buffer.count)
        }
    }

    /// Read data still in the content cache's file: libfuse moves it to the kernel itself.
    func reply(read: FileSystem.ReadData) {
        switch read {
        case .bytes(let bytes): reply(bytes: bytes)
        case .file(let fd, let offset, let count):
            detach()
            _ = cfuse3_reply_fd(raw, fd, off_t(offset), count)
        }
    }

    func reply(xattr: FileSystem.XattrReply) {
        switch xattr {
        case .size(let n):
            detach()
            fuse_reply_xattr(raw, n)
        case .value(let bytes): reply(bytes: bytes)
        }
    }

    func reply(statfs s: FileSystemStatistics) {
        detach()
        var v = statvfs()
        v.f_bsize = UInt(s.blockSize)
        v.f_frsize = UInt(s.blockSize)
        v.f_blocks = fsblkcnt_t(s.totalBlocks)
        v.f_bfree = fsblkcnt_t(s.freeBlocks)
        v.f_bavail = fsblkcnt_t(s.freeBlocks)
        v.f_files = fsfilcnt_t(s.files)
        v.f_ffree = fsfilcnt_t(1 << 30)
        v.f_favail = fsfilcnt_t(1 << 30)
        v.f_namemax = UInt(s.maxNameLength)
        fuse_reply_statfs(raw, &v)
    }

    static func timespec(_ nanoseconds: Int64) -> Glibc.timespec {
        let seconds = nanoseconds.floorDivided(by: 1_000_000_000)
        return Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds - seconds * 1_000_000_000))
    }

    static func stat(_ a: Attributes) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.inode)
        st.st_mode = (a.isDirectory ? S_IFDIR : a.isSymbolicLink ? S_IFLNK : S_IFREG) | mode_t(a.permissions)
        st.st_nlink = UInt(a.links)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(a.size)
        st.st_blocks = Int(a.blocks)
        st.st_blksize = 4096
        st.st_mtim = Request.timespec(a.mtimeNanoseconds)
        st.st_ctim = Request.timespec(a.ctimeNanoseconds)
        st.st_atim = Request.timespec(a.atimeNanoseconds)
        return st
    }
}
