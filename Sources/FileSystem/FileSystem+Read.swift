import RemoteCache

extension FileSystem {
    /// Opens a file for reading. Asking for write access fails with EROFS.
    /// Returns the handle and whether the kernel may keep the file's cached pages.
    public func open(_ inode: UInt64, writable: Bool) throws(FSError) -> (handle: UInt64, keepCache: Bool) {
        if writable { throw .readOnly }
        let path = try path(of: inode)
        guard let entry = try remote({ try cache.entry(path) }) else { throw .notFound }
        if entry.isDirectory { throw .isDirectory }
        return (handles.add(.file(ReadStream(path: path, entry: entry))), keepsPageCache)
    }

    /// Up to `count` bytes at `offset`; fewer only at the end of the file. A failed fetch
    /// (after the reader's retry budget) throws, so the kernel gets EIO — never zeros.
    /// A file that changed on the server since `open` gives ESTALE.
    public func read(_ handle: UInt64, offset: Int64, count: Int) throws(FSError) -> [UInt8] {
        guard case .file(let stream)? = handles.get(handle) else { throw .badHandle }
        do {
            return try stream.read(offset: offset, count: count, client: reader, policy: options.readAhead)
        } catch {
            if case .stale = error { cache.invalidate(MetadataCache.split(stream.path).parent) }
            logger.warning("read /\(stream.path) @\(offset)+\(count): \(error)")
            throw error
        }
    }

    public func release(_ handle: UInt64) {
        handles.remove(handle)
    }
}
