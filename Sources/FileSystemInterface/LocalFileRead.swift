import Glibc

/// Reads of local files (staged copies, cached content, `incoming/` files) that the
/// filesystem and the ingest pipeline share.
public enum LocalFileRead {
    /// The bytes of `range` in the open file `fd`, read with `pread` until the range is whole
    /// or the file ends (or a read fails): fewer bytes than asked mean a short file.
    public static func bytes(_ fd: Int32, _ range: Range<Int64>) -> [UInt8] {
        let count = Int(range.upperBound - range.lowerBound)
        var done = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(range.lowerBound) + off_t(done))
                if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
            initialized = done
        }
        return bytes
    }
}
