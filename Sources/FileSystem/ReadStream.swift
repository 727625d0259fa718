import Foundation
import RemoteCache
import WebDAV

/// One open file being read: decides what to fetch into the file's cached content and waits
/// for the bytes a read needs.
///
/// The state machine: a read that continues near where the previous ones ended (within one
/// window: the kernel's readahead sends several reads at once and the worker pool may run
/// them out of order) is sequential. A sequential read makes sure the bytes after it are
/// coming: up to `maxInFlight` ranged GETs of `window` bytes each, the window doubling from
/// `initialWindow` up to `maxWindow` with every GET issued. Any other read is random: the
/// window falls back to its initial size and only the asked range (rounded up to the granule)
/// is fetched. Bytes already held are never fetched again.
final class ReadStream: @unchecked Sendable {
    // @unchecked: `lastEnd` and `window` are guarded by `lock` (a leaf lock); `content` has its own.
    let path: String
    /// The file as it was when opened (what an fgetattr of this handle answers).
    let entry: RemoteEntry
    let content: CachedContent
    private let lock = NSLock()
    private var lastEnd: Int64 = 0
    private var window: Int64 = 0

    init(path: String, entry: RemoteEntry, content: CachedContent) {
        self.path = path
        self.entry = entry
        self.content = content
    }

    var size: Int64 { content.size }

    /// Classifies the read at `offset..<end` and returns the window to fetch ahead with
    /// (0 for a random read).
    private func advance(offset: Int64, end: Int64, policy: FileSystem.ReadAhead) -> Int64 {
        lock.lock(); defer { lock.unlock() }
        let slack = max(window, policy.initialWindow)
        let sequential = offset == lastEnd || (window > 0 && offset >= lastEnd - policy.maxWindow && offset <= lastEnd + slack)
        window = sequential ? max(window, policy.initialWindow) : 0
        lastEnd = sequential ? max(lastEnd, end) : end
        return window
    }

    /// The window grows with every GET a sequential reader issues.
    private func grow(policy: FileSystem.ReadAhead) -> Int64 {
        lock.lock(); defer { lock.unlock() }
        let current = window
        window = min(policy.maxWindow, max(policy.initialWindow, window * 2))
        return current
    }

    /// The range of up to `count` bytes at `offset`, once it is held in the content's file.
    /// Starts the fetches the read needs (on `fetcher`) and waits until its range is held, a
    /// fetch of it fails, or `policy.timeout` passes.
    /// With `wait: false` it only plans: the range if it is held already, else nil (the caller
    /// then calls again, waiting, from a thread that may block).
    func read(offset: Int64, count: Int, fetcher: ContentFetcher, policy: FileSystem.ReadAhead,
              wait: Bool = true) throws(FSError) -> Range<Int64>? {
        guard offset < size, count > 0 else { return offset..<offset }
        let range = offset..<min(size, offset + Int64(count))
        let window = advance(offset: offset, end: range.upperBound, policy: policy)
        let deadline = Date().addingTimeInterval(policy.timeout)

        content.condition.lock()
        let startSequence = content.failureSequence
        var planned: [Range<Int64>] = []
        if window > 0 {
            // What the read needs, as the start of a window, then more windows ahead while
            // fewer than maxInFlight GETs run.
            let start = content.horizon(from: range.lowerBound)
            if start < range.upperBound {
                let piece = start..<min(size, max(range.upperBound, start + grow(policy: policy)))
                planned += content.unplanned(piece)
                for r in planned { content.inFlight.append(r) }
            }
            var horizon = content.horizon(from: range.lowerBound)
            let reach: Int64 = range.upperBound + policy.maxWindow * Int64(policy.maxInFlight)
            while content.inFlight.count < policy.maxInFlight && horizon < min(size, reach) {
                let piece = horizon..<min(size, horizon + grow(policy: policy))
                planned.append(piece)
                content.inFlight.append(piece)
                horizon = piece.upperBound
            }
        } else {
            let granule = policy.randomGranule
            let length: Int64 = range.upperBound - range.lowerBound
            let roundedEnd: Int64 = range.lowerBound + (length + granule - 1) / granule * granule
            let rounded = range.lowerBound..<min(size, roundedEnd)
            for gap in content.unplanned(rounded) {
                planned.append(gap)
                content.inFlight.append(gap)
            }
        }
        let ready = content.held.contains(range)
        content.condition.unlock()
        for piece in planned { fetcher.start(piece, of: content, path: path) }
        if ready { return range }
        if !wait { return nil }

        content.condition.lock()
        while !content.held.contains(range) {
            if let error = content.failure(overlapping: range, after: startSequence) {
                content.condition.unlock()
                throw error
            }
            // A range whose fetch ended without it (another reader's failed fetch recorded
            // before this read began) is fetched again.
            let missing = content.unplanned(range)
            if !missing.isEmpty {
                for r in missing { content.inFlight.append(r) }
                content.condition.unlock()
                for r in missing { fetcher.start(r, of: content, path: path) }
                content.condition.lock()
                continue
            }
            if !content.condition.wait(until: deadline) && !content.held.contains(range) {
                content.condition.unlock()
                throw .remote(DAVError(.transport, method: "GET", path: path,
                                       detail: "no data within \(Int(policy.timeout)) s"))
            }
        }
        content.condition.unlock()
        return range
    }
}

/// Runs ranged GETs into cached content on a pool of threads of its own, so a FUSE worker
/// waiting for bytes never also has to carry a transfer.
final class ContentFetcher: Sendable {
    let client: WebDAVClient
    let cache: ContentCache
    let pool: WorkerPool
    /// How long a fetch keeps resuming after its connection broke mid-body.
    let resumeBudget: Double

    init(client: WebDAVClient, cache: ContentCache, threads: Int, resumeBudget: Double) {
        self.client = client
        self.cache = cache
        self.pool = WorkerPool(threads: threads, name: "ncfs-fetch")
        self.resumeBudget = resumeBudget
    }

    /// Fetches `range` (already listed in `content.inFlight`) in the background.
    func start(_ range: Range<Int64>, of content: CachedContent, path: String) {
        pool.submit { [self] in
            fetch(range, of: content, path: path)
            cache.fetchEnded(content)
        }
    }

    private func fetch(_ range: Range<Int64>, of content: CachedContent, path: String) {
        var position = range.lowerBound
        let deadline = Date().addingTimeInterval(resumeBudget)
        var failure: FSError?
        while position < range.upperBound {
            let before = position
            do {
                try client.get(path, range: position..<range.upperBound, ifMatch: content.etag, sink: .stream({ chunk in
                    try Self.store(chunk, at: position, in: content)
                    position += Int64(chunk.count)
                }))
                if position < range.upperBound {
                    throw DAVError(.protocolViolation, method: "GET", path: path,
                                   detail: "the server sent \(position - before) of \(range.upperBound - before) bytes")
                }
            } catch {
                let wrapped = FSError.wrap(error)
                // A connection that broke after some bytes resumes from where it stopped;
                // the server's refusals and a fetch that made no progress end here.
                if case .remote(let dav) = wrapped, dav.kind == .transport || dav.kind == .protocolViolation,
                   position > before, Date() < deadline { continue }
                failure = wrapped
                break
            }
        }
        content.condition.lock()
        if let index = content.inFlight.firstIndex(of: range) { content.inFlight.remove(at: index) }
        if let failure {
            if position < range.upperBound { content.recordFailure(position..<range.upperBound, failure) }
            if case .remote(let dav) = failure, dav.kind == .preconditionFailed || dav.kind == .notFound {
                content.condition.unlock()
                cache.discard(content)
                content.condition.lock()
            }
        }
        content.condition.broadcast()
        content.condition.unlock()
    }

    /// Writes a received chunk at `offset` of the local file and marks it held.
    private static func store(_ chunk: UnsafeRawBufferPointer, at offset: Int64, in content: CachedContent) throws(FSError) {
        let written = try FileSystem.writeAll(content.fd, offset: offset, bytes: chunk, what: "the cached copy")
        content.condition.lock()
        content.held.insert(offset..<offset + Int64(written))
        content.condition.broadcast()
        content.condition.unlock()
    }
}
