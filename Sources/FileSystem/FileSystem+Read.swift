import RemoteCache

extension FileSystem {
    /// Opens a file for reading. Asking for write access fails with EROFS.
    /// Returns the handle and whether the kernel may keep the file's cached pages.
    public func open(_ inode: UInt64, writable: Bool) throws(FSError) -> (handle: UInt64, keepCache: Bool) {
        if writable { throw .readOnly }
        let path = try path(of: inode)
        guard let entry = try remote({ try cache.entry(path) }) else { throw .notFound }
        if entry.isDirectory { throw .isDirectory }
        let content = try contentCache.open(entry, path: path)
        return (handles.add(.file(ReadStream(path: path, content: content))), keepsPageCache)
    }

    /// Up to `count` bytes at `offset`; fewer only at the end of the file. A failed fetch
    /// (after the reader's retry budget) throws, so the kernel gets EIO — never zeros.
    /// A file that changed on the server since `open` gives ESTALE (the GETs carry If-Match
    /// with the ETag the file was opened at, so bytes of another version are never served).
    public func read(_ handle: UInt64, offset: Int64, count: Int) throws(FSError) -> [UInt8] {
        switch try readData(handle, offset: offset, count: count) {
        case .bytes(let bytes): return bytes
        case .file(let fd, let offset, let count): return try CachedContent.read(fd, offset..<offset + Int64(count))
        }
    }

    /// Where a read's bytes are: in memory, or (the usual case) a range of an open file of the
    /// content cache, valid until the handle is released, which the FUSE bridge hands to the
    /// kernel without copying it.
    public enum ReadData: Sendable {
        case bytes([UInt8])
        case file(descriptor: Int32, offset: Int64, count: Int)
    }

    /// `read`, answered with where the bytes are rather than the bytes.
    public func readData(_ handle: UInt64, offset: Int64, count: Int) throws(FSError) -> ReadData {
        guard case .file(let stream)? = handles.get(handle) else { throw .badHandle }
        do {
            let range = try stream.read(offset: offset, count: count, fetcher: fetcher, policy: options.readAhead)
            if range.isEmpty { return .bytes([]) }
            return .file(descriptor: stream.content.descriptor, offset: range.lowerBound, count: Int(range.upperBound - range.lowerBound))
        } catch {
            logger.warning("read /\(stream.path) @\(offset)+\(count): \(error)")
            if case .remote(let dav) = error, dav.kind == .preconditionFailed || dav.kind == .notFound {
                // Relisted on the next lookup, so the next open sees the current version.
                cache.invalidate(MetadataCache.split(stream.path).parent)
                throw .stale
            }
            throw error
        }
    }

    public func release(_ handle: UInt64) {
        if case .file(let stream)? = handles.remove(handle) { contentCache.close(stream.content) }
    }
}
