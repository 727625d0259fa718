import FileContent
import Foundation
import Glibc
import RemoteCache

extension FileSystem {
    /// Opens a file. A file with a staged local version (being written, or its upload
    /// pending) is read from that; opening for writing stages it (with the server's content
    /// unless `truncate`); any other file is read through the content cache.
    /// Returns the handle and whether the kernel may keep the file's cached pages.
    public func open(_ inode: UInt64, writable: Bool, truncate: Bool = false) throws(FSError) -> (handle: UInt64, keepCache: Bool) {
        let path = try path(of: inode)
        // An upload can finish (and its staged file give way to the server's version) at any
        // moment: look for the staged file first, and take the entry only when there is none,
        // so an entry describing a staged file never reaches the content cache. An open that
        // loses that race anyway (its staged file was just retired) tries again.
        var attempts = 0
        while true {
            attempts += 1
            do {
                return try openOnce(path, writable: writable, truncate: truncate)
            } catch {
                if attempts < 3, error.isStagingRace { continue }
                throw error
            }
        }
    }

    private func openOnce(_ path: String, writable: Bool, truncate: Bool) throws(FSError) -> (handle: UInt64, keepCache: Bool) {
        if let place = incomingPlace(path) { return (try open(in: place, writable: writable, truncate: truncate), false) }
        if let file = writeBack?.staged(path) {
            guard writable else { return (try openStaged(file, writable: false, truncate: false), false) }
            return (try openForWriting(path, entry: nil, truncate: truncate).handle, false)
        }
        guard let entry = try entry(at: path) else { throw .notFound }
        if entry.isDirectory { throw .isDirectory }
        if writable { return (try openForWriting(path, entry: entry, truncate: truncate).handle, false) }
        // Staged meanwhile: the entry may describe the staged file; read that instead.
        if writeBack?.staged(path) != nil { throw .stagingRace }
        let content = try contentCache.open(entry, path: path)
        return (handles.add(.file(ReadStream(path: path, entry: entry, content: content))), keepsPageCache)
    }

    /// Stages `path` (its staged file, or a new one from the server's `entry`, nil for a new
    /// file) and opens it for writing; the writer count taken by staging is given back if the
    /// open fails.
    func openForWriting(_ path: String, entry: RemoteEntry?, truncate: Bool) throws(FSError) -> (file: StagedFile, handle: UInt64) {
        let writeBack = try requireWritable()
        let file = try writeBack.stage(path, entry: entry, truncate: truncate)
        do {
            return (file, try openStaged(file, writable: true, truncate: truncate))
        } catch {
            writeBack.closeWriter(file)
            throw error
        }
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
        try readData(handle, offset: offset, count: count, wait: true)!
    }

    /// `readData` if it can be answered without waiting (the bytes are local already), else
    /// nil — after starting whatever fetches the read needs. Never blocks, so the FUSE loop
    /// thread can answer most reads of a sequential stream itself, without a worker hop.
    public func readDataIfReady(_ handle: UInt64, offset: Int64, count: Int) -> ReadData? {
        try? readData(handle, offset: offset, count: count, wait: false)
    }

    private func readData(_ handle: UInt64, offset: Int64, count: Int, wait: Bool) throws(FSError) -> ReadData? {
        if case .local(let fd, _, _)? = handles.get(handle) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .cacheFailure("fstat: \(FileSystem.lastErrorText())") }
            let size = Int64(st.st_size)
            guard offset < size, count > 0 else { return .bytes([]) }
            return .file(descriptor: fd, offset: offset, count: Int(min(Int64(count), size - offset)))
        }
        if case .staged(let file, let fd, _)? = handles.get(handle) {
            file.lock.lock()
            let size = file.size
            file.lock.unlock()
            guard offset < size, count > 0 else { return .bytes([]) }
            return .file(descriptor: fd, offset: offset, count: Int(min(Int64(count), size - offset)))
        }
        guard case .file(let stream)? = handles.get(handle) else { throw .badHandle }
        do {
            guard let range = try stream.read(offset: offset, count: count, fetcher: fetcher, policy: options.readAhead, wait: wait) else {
                return nil
            }
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
        let (removed, unflushed) = handles.removeNotingWrites(handle)
        switch removed {
        case .file(let stream)?:
            stream.close()
            contentCache.close(stream.content)
        case .staged(let file, let fd, let writable)?:
            Glibc.close(fd)
            if writable, let writeBack {
                // Only what this handle wrote since its last flush (a flush that failed, or
                // pages of a shared mapping written back after it): the kernel sends a release
                // when it likes, and recording here what another descriptor has written since
                // would pass a partial rewrite off as closed.
                if unflushed {
                    do { try writeBack.record(file) } catch { logger.error("recording /\(file.path) at release: \(error)") }
                }
                writeBack.closeWriter(file)
            }
        case .local(let fd, let path, let writable)?:
            incoming?.closed(fd, path, writable: writable)
        case .directory?, nil: break
        }
    }
}
