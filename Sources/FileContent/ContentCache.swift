import FileSystemInterface
import Foundation
import Logging
import RemoteCache
internal import SystemPackage

/// File content on local disk, one sparse file per version (file id + ETag), least recently
/// used evicted first once the stored bytes pass the limit.
///
/// On disk: `<key>.part` while a version is incomplete, renamed to `<key>` when every byte is
/// held. Only complete files survive a restart (a `.part` file's map of held ranges lives in
/// memory); their modification time is their last use, which orders eviction after a restart.
/// A version in use (open, or being fetched) is never evicted; a newer version of a file
/// replaces the older one as soon as the older one is not in use.
public final class ContentCache: @unchecked Sendable {
    // @unchecked: `entries`, `useCounter` and `setupError` are guarded by `lock`; the entries'
    // own state by their condition (taken after `lock`, never before).
    let directory: URL
    let limit: Int64
    private let removeOnClose: Bool
    private let logger: Logger
    private let lock = NSLock()
    private var entries: [String: CachedContent] = [:]
    private var useCounter: UInt64 = 0
    /// Why the folder cannot be used (every open then fails with EIO, and the mount refuses
    /// to start).
    public private(set) var setupError: String?

    public init(options: ContentCacheOptions, logger: Logger) {
        self.logger = logger
        self.limit = max(0, options.limit)
        if let dir = options.directory {
            directory = dir
            removeOnClose = false
        } else {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-content-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            removeOnClose = true
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try loadExisting()
        } catch {
            setupError = "content cache \(directory.path): \(error.localizedDescription)"
        }
    }

    deinit {
        if removeOnClose { try? FileManager.default.removeItem(at: directory) }
    }

    /// Registers the complete files a previous run left, oldest use first; removes partial ones.
    private func loadExisting() throws {
        var found: [(key: String, size: Int64, mtime: Double)] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let path = directory.appendingPathComponent(name).path
            if name.hasSuffix(".part") { unlink(path); continue }
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Self.parse(key: name) != nil else { continue }
            found.append((name, Int64(st.st_size), Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
        }
        for item in found.sorted(by: { $0.mtime < $1.mtime }) {
            guard let parsed = Self.parse(key: item.key) else { continue }
            let content = CachedContent(key: item.key, fileID: parsed.fileID, etag: "", size: item.size)
            content.held.insert(0..<item.size)
            useCounter += 1
            content.lastUse = useCounter
            entries[item.key] = content
        }
    }

    /// The cached content of `entry` at `path`, counted as open until `close`. Creates the
    /// local file of a version seen for the first time.
    public func open(_ entry: RemoteEntry, path: String) throws(FSError) -> CachedContent {
        lock.lock(); defer { lock.unlock() }
        if let setupError { throw .cacheFailure(setupError) }
        useCounter += 1
        // Without an ETag, versions cannot be told apart: the bytes serve one open only.
        let key = entry.etag.isEmpty ? "x\(useCounter)-" + StableHash.hex(UInt64(0)) : Self.key(for: entry, path: path)
        let content: CachedContent
        if let existing = entries[key], !existing.discarded, existing.size == entry.size, !existing.etag.isEmpty {
            content = existing
        } else if let existing = entries[key], existing.etag.isEmpty, !existing.singleUse, existing.size == entry.size {
            // A complete file a previous run left (registered before its ETag was known, and
            // never opened since: any open replaces it here): the same bytes, now with the
            // ETag its key was made from.
            content = CachedContent(key: key, fileID: entry.fileID, etag: entry.etag, size: entry.size)
            existing.condition.lock()
            content.held = existing.held
            existing.condition.unlock()
            entries[key] = content
        } else {
            if let existing = entries[key] { retire(existing) }
            content = CachedContent(key: key, fileID: entry.fileID, etag: entry.etag, size: entry.size, singleUse: entry.etag.isEmpty)
            entries[key] = content
        }
        // Older versions of the same file are garbage now.
        if entry.fileID > 0 {
            for other in entries.values where other.fileID == entry.fileID && other.key != key { retire(other) }
        }
        content.condition.lock(); defer { content.condition.unlock() }
        if content.fd < 0 && content.size > 0 {
            var fd: Int32 = -1
            if content.isComplete {
                fd = Glibc.open(file(key, partial: false), O_RDWR | O_CLOEXEC)
                // A complete file that went missing is fetched again.
                if fd < 0 { content.held = ExtentSet() }
            }
            if fd < 0 && !content.held.ranges.isEmpty && !content.isComplete {
                // Partly fetched before and closed since: its bytes are still in the file.
                fd = Glibc.open(file(key, partial: true), O_RDWR | O_CLOEXEC)
                if fd < 0 { content.held = ExtentSet() }
            }
            if fd < 0 {
                // A fresh file: nothing held, so nothing to keep (the truncate clears leftovers).
                let path = file(key, partial: true)
                fd = Glibc.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                guard fd >= 0, ftruncate(fd, off_t(content.size)) == 0 else {
                    let reason = Errno(rawValue: errno).description
                    if fd >= 0 { Glibc.close(fd) }
                    entries[key] = nil
                    throw .cacheFailure("creating \(path): \(reason)")
                }
            }
            content.fd = fd
        }
        content.openCount += 1
        content.lastUse = useCounter
        return content
    }

    /// One handle of `content` closed.
    public func close(_ content: CachedContent) {
        lock.lock(); defer { lock.unlock() }
        useCounter += 1
        content.condition.lock()
        content.openCount -= 1
        content.lastUse = useCounter
        if content.fd >= 0 && content.isComplete { futimens(content.fd, nil) }
        let singleUse = content.singleUse && content.openCount == 0
        closeIfIdle(content)
        content.condition.unlock()
        if singleUse && entries[content.key] === content { retire(content) }
        evict()
    }

    /// A fetch into `content` ended: publishes a completed file under its final name, closes
    /// the file if nobody uses it, and evicts past the limit.
    func fetchEnded(_ content: CachedContent) {
        lock.lock(); defer { lock.unlock() }
        content.condition.lock()
        if content.isComplete && !content.discarded && entries[content.key] === content {
            if rename(file(content.key, partial: true), file(content.key, partial: false)) != 0 && errno != ENOENT {
                logger.warning("content cache: cannot publish \(content.key): \(Errno(rawValue: errno).description)")
            }
        }
        closeIfIdle(content)
        content.condition.unlock()
        evict()
    }

    /// The server no longer has this version: new opens get a fresh one.
    public func discard(_ content: CachedContent) {
        lock.lock(); defer { lock.unlock() }
        if entries[content.key] === content { retire(content) }
    }

    /// This mount uploaded a new version of the file: whatever is cached of it is an older
    /// version, even under the same ETag (Nextcloud 32 keeps a file's ETag when it is
    /// overwritten within the same second, so the key cannot tell the versions apart). New
    /// opens get a fresh one; handles that still have the old one open keep reading it.
    public func forget(fileID: Int64) {
        guard fileID > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        for content in entries.values where content.fileID == fileID { retire(content) }
    }

    /// Bytes held on disk (for statistics and tests).
    public var storedBytes: Int64 {
        lock.lock(); defer { lock.unlock() }
        return entries.values.reduce(0) { total, content in
            content.condition.lock(); defer { content.condition.unlock() }
            return total + content.held.total
        }
    }

    // MARK: Private (callers hold `lock`)

    /// Removes `content` from the index and its file from disk; handles that still have it
    /// open keep reading through their descriptor.
    private func retire(_ content: CachedContent) {
        entries[content.key] = nil
        content.condition.lock()
        content.discarded = true
        closeIfIdle(content)
        content.condition.unlock()
        unlink(file(content.key, partial: true))
        unlink(file(content.key, partial: false))
    }

    /// Closes the descriptor of content nobody uses. Caller holds `content.condition`.
    private func closeIfIdle(_ content: CachedContent) {
        if !content.isBusy && content.fd >= 0 {
            Glibc.close(content.fd)
            content.fd = -1
        }
    }

    /// Drops least recently used idle versions until the stored bytes fit the limit.
    private func evict() {
        var stored: [(content: CachedContent, bytes: Int64, lastUse: UInt64, busy: Bool)] = []
        var total: Int64 = 0
        for content in entries.values {
            content.condition.lock()
            let bytes = content.held.total
            stored.append((content, bytes, content.lastUse, content.isBusy))
            content.condition.unlock()
            total += bytes
        }
        guard total > limit else { return }
        for item in stored.sorted(by: { $0.lastUse < $1.lastUse }) where !item.busy {
            retire(item.content)
            total -= item.bytes
            if total <= limit { break }
        }
    }

    private func file(_ key: String, partial: Bool) -> String {
        directory.appendingPathComponent(partial ? key + ".part" : key).path
    }

    // MARK: Keys

    /// `<fileid>-<hash of ETag>`; a server without file ids keys by a hash of the path.
    static func key(for entry: RemoteEntry, path: String) -> String {
        let id = entry.fileID > 0 ? String(entry.fileID) : "p" + StableHash.hex(path)
        return id + "-" + StableHash.hex(entry.etag)
    }

    static func parse(key: String) -> (fileID: Int64, etagHash: String)? {
        let parts = key.split(separator: "-")
        guard parts.count == 2, parts[1].count == 16 else { return nil }
        if let id = Int64(parts[0]) { return (id, String(parts[1])) }
        return parts[0].hasPrefix("p") ? (0, String(parts[1])) : nil
    }
}
