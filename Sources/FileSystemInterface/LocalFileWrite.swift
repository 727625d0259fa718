import Glibc
internal import SystemPackage

/// Writes into local files (staged copies, cached content, `incoming/` files) that the
/// filesystem and the content cache share.
public enum LocalFileWrite {
    /// Writes all of `bytes` at `offset` of the open file `fd` (`pwrite` until done, retried
    /// on EINTR); a failure is a `cacheFailure` naming `what`.
    @discardableResult
    public static func all(_ fd: Int32, offset: Int64, bytes: UnsafeRawBufferPointer, what: String) throws(FSError) -> Int {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written))
            if n > 0 { written += n } else if n < 0 && errno == EINTR { continue } else {
                throw .cacheFailure("writing \(what): \(Errno(rawValue: errno).description)")
            }
        }
        return written
    }
}
