import FileSystemInterface
import Foundation
import HTTPTransport
import RemoteCache
import Synchronization
import WebDAV

/// One open file being read: decides what to fetch into the file's cached content and waits
/// for the bytes a read needs.
///
/// The state machine: a read that continues near where the previous ones ended (within
/// `sequentialSlack` ahead or `streamAhead` behind: the kernel's readahead sends several reads
/// at once and the worker pool may run them out of order) is sequential. A sequential
/// read whose following bytes are not already held or coming starts one stream: a GET from
/// there to the next held byte (normally the end of the file) that runs ahead of its readers
/// with back-pressure (see `ReadAhead`). Any other read is random: it cancels this
/// reader's stream, and fetches only the asked range (rounded up to the granule); the second
/// random read of a small enough file, from a server slow enough per request, also starts
/// the one whole-file fetch of its version.
/// Bytes already held are never fetched again.
public final class ReadStream: @unchecked Sendable {
    // @unchecked: `lastStart`, `lastEnd`, `sequential` and `randomReads` are guarded by `lock` (a leaf lock,
    // never held while taking another); `stream` and `streamed` by `content.condition`; `content` has its own.
    public let path: String
    /// The file as it was when opened (what an fgetattr of this handle answers).
    public let entry: RemoteEntry
    public let content: CachedContent
    private let lock = NSLock()
    private var lastStart: Int64 = -1
    private var lastEnd: Int64 = 0
    private var sequential = false
    private var randomReads = 0
    /// This reader's stream, while it may still be running.
    private var stream: ContentFetch?
    /// This reader has had a stream.
    private var streamed = false

    public init(path: String, entry: RemoteEntry, content: CachedContent) {
        self.path = path
        self.entry = entry
        self.content = content
    }

    public var size: Int64 { content.size }

    /// Classifies the read at `offset..<end`: whether it is sequential, and how many random
    /// reads this reader has made (this one included).
    private func classify(offset: Int64, end: Int64, policy: ReadAhead) -> (sequential: Bool, randomReads: Int) {
        lock.lock(); defer { lock.unlock() }
        // The same read again: the FUSE bridge plans a read on its loop thread (`wait: false`)
        // and, when the bytes are not there yet, waits for them on a worker.
        if offset == lastStart && end == lastEnd { return (sequential, randomReads) }
        lastStart = offset
        let near = offset >= lastEnd - policy.streamAhead && offset <= lastEnd + policy.sequentialSlack
        sequential = offset == lastEnd || (sequential && near)
        lastEnd = sequential ? max(lastEnd, end) : end
        if !sequential { randomReads += 1 }
        return (sequential, randomReads)
    }

    /// The range of up to `count` bytes at `offset`, once it is held in the content's file.
    /// Starts the fetches the read needs (on `fetcher`) and waits until its range is held, a
    /// fetch of it fails, or `policy.timeout` passes.
    /// With `wait: false` it only plans: the range if it is held already, else nil (the caller
    /// then calls again, waiting, from a thread that may block).
    public func read(offset: Int64, count: Int, fetcher: ContentFetcher, policy: ReadAhead,
              wait: Bool = true) throws(FSError) -> Range<Int64>? {
        guard offset < size, count > 0 else { return offset..<offset }
        let range = offset..<min(size, offset + Int64(count))
        let (sequential, randomReads) = classify(offset: offset, end: range.upperBound, policy: policy)
        let deadline = Date().addingTimeInterval(policy.timeout)

        content.condition.lock()
        let startSequence = content.failureSequence
        var started: [ContentFetch] = []
        // A read anywhere in a stream's span (the kernel's readahead asks for several ranges
        // at once) lets that stream run on to it and past it: a stream never waits for its
        // readers while one of them waits for it.
        for fetch in content.fetches where fetch.kind == .stream && !fetch.cancelled && fetch.readerEnd < range.upperBound
            && fetch.start <= range.lowerBound && range.lowerBound < fetch.remaining.upperBound {
            fetch.readerEnd = range.upperBound
            content.condition.broadcast()
        }
        if sequential {
            let start = content.horizon(from: range.lowerBound)
            // One stream from where the held-or-coming bytes end: when this read needs bytes
            // from there, or (a reader whose stream ended while it waited for it) when they
            // stop within a window. Not earlier: a 4 KiB read at a random spot makes the
            // kernel read on past it, within the 128 KiB that spot's GET brought.
            if start < size && (start < range.upperBound || (streamed && start < range.upperBound + policy.initialWindow)) {
                if let own = stream { content.cancel(own) }
                let fetch = ContentFetch(.stream, start..<content.nextHeld(from: start))
                fetch.readerEnd = range.upperBound
                content.add(fetch)
                stream = fetch
                streamed = true
                started.append(fetch)
            }
        } else {
            // A seek away: this reader's stream would only fetch what nobody reads.
            if let own = stream {
                content.cancel(own)
                stream = nil
            }
            if randomReads >= 2, size <= policy.wholeFileMax, !content.wholeFetchStarted,
               fetcher.rangeLatency >= policy.wholeFileMinLatency {
                let gaps = content.held.gaps(in: 0..<size)
                if let first = gaps.first, let last = gaps.last {
                    content.wholeFetchStarted = true
                    let fetch = ContentFetch(.whole, first.lowerBound..<last.upperBound)
                    content.add(fetch)
                    started.append(fetch)
                }
            }
            let granule = policy.randomGranule
            let length: Int64 = range.upperBound - range.lowerBound
            let roundedEnd: Int64 = range.lowerBound + (length + granule - 1) / granule * granule
            let rounded = range.lowerBound..<min(size, roundedEnd)
            for gap in content.unplanned(rounded, wholeReach: wholeReach(fetcher: fetcher)) {
                let fetch = ContentFetch(.range, gap)
                content.add(fetch)
                started.append(fetch)
            }
        }
        let ready = content.held.contains(range)
        content.condition.unlock()
        for fetch in started { fetcher.start(fetch, of: content, path: path, policy: policy) }
        if ready { return range }
        if !wait { return nil }

        content.condition.lock()
        while !content.held.contains(range) {
            if let error = content.failure(overlapping: range, after: startSequence) {
                content.condition.unlock()
                throw error
            }
            // A range whose fetch ended without it (another reader's failed fetch recorded
            // before this read began, a stream cancelled or parked) is fetched again.
            let missing = content.unplanned(range).map { ContentFetch(.range, $0) }
            if !missing.isEmpty {
                for fetch in missing { content.add(fetch) }
                content.condition.unlock()
                for fetch in missing { fetcher.start(fetch, of: content, path: path, policy: policy) }
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

    /// How far past its position a running whole-file fetch gets within the time a ranged
    /// GET usually takes: a random read that near waits for it instead of asking the server
    /// again. Caller holds `content.condition`.
    private func wholeReach(fetcher: ContentFetcher) -> Int64 {
        guard let whole = content.fetches.first(where: { $0.kind == .whole }),
              let rate = whole.rate(now: .now) else { return 0 }
        return Int64(rate * fetcher.rangeLatency)
    }

    /// The handle is released: its stream stops (a whole-file fetch goes on: it belongs to
    /// the version, and ends by itself).
    public func close() {
        content.condition.lock(); defer { content.condition.unlock() }
        if let own = stream { content.cancel(own) }
        stream = nil
    }
}

/// Runs the GETs filling cached content on a pool of threads of its own, so a FUSE worker
/// waiting for bytes never also has to carry a transfer.
public final class ContentFetcher: Sendable {
    let client: any RemoteStore
    let cache: ContentCache
    public let pool: WorkerPool
    /// How long a fetch keeps resuming after its connection broke mid-body without progress.
    let resumeBudget: Double
    /// Seconds a ranged GET of a random read took, a moving average (the first one measured
    /// replaces the starting guess, a real server's usual 50 ms), and how many were measured.
    private let latency = Mutex<(seconds: Double, samples: Int)>((0.05, 0))

    public init(client: any RemoteStore, cache: ContentCache, threads: Int, resumeBudget: Double) {
        self.client = client
        self.cache = cache
        self.pool = WorkerPool(threads: threads, name: "ncfs-fetch")
        self.resumeBudget = resumeBudget
    }

    // The pool's threads hold the pool, not the fetcher (a queued fetch holds it only until it
    // ran): with the fetcher gone, nothing more comes, and they end. A process that mounts
    // once never gets here; one that makes a file system after another (the model tests'
    // remounts) kept every pool's threads, thousands of them.
    deinit { pool.stop() }

    var rangeLatency: Double { latency.withLock { $0.seconds } }

    /// Runs `fetch` (already registered with `content`) in the background.
    func start(_ fetch: ContentFetch, of content: CachedContent, path: String, policy: ReadAhead) {
        pool.submit { [self] in
            run(fetch, of: content, path: path, policy: policy)
            cache.fetchEnded(content)
        }
    }

    /// Received bytes are stored in pieces of up to this size (or what came within
    /// `coalesceDelay`): a loopback or LAN socket hands libcurl 16 KiB at a time, and storing
    /// each (a pwrite, a lock, waking the readers) cost a sequential read a fifth of its time.
    static let coalesceSize = 256 << 10
    static let coalesceDelay: Duration = .milliseconds(10)

    private func run(_ fetch: ContentFetch, of content: CachedContent, path: String, policy: ReadAhead) {
        content.condition.lock()
        var position = fetch.remaining.lowerBound
        let end = fetch.remaining.upperBound
        var cancelled = fetch.cancelled
        content.condition.unlock()
        let began = ContinuousClock.now
        var deadline = Date().addingTimeInterval(resumeBudget)
        var failure: FSError?
        // Bytes received and not stored yet: `pending` holds those at `position`.
        var pending: [UInt8] = []
        var pendingSince = began
        func flush() throws {
            guard !pending.isEmpty else { return }
            try pending.withUnsafeBytes { try Self.store($0, at: position, for: fetch, in: content, policy: policy) }
            position += Int64(pending.count)
            pending.removeAll(keepingCapacity: true)
        }
        while !cancelled && position < end {
            let before = position
            do {
                defer {
                    // Whatever came before an error is the version asked for (If-Match): kept.
                    do { try flush() } catch { pending.removeAll() }
                }
                try fetch.cancellation.run { () throws in
                    _ = try client.get(path, range: position..<end, ifMatch: content.etag, sink: .stream({ chunk in
                        if pending.isEmpty {
                            pendingSince = .now
                            if pending.capacity == 0 { pending.reserveCapacity(Self.coalesceSize) }
                        }
                        pending.append(contentsOf: chunk)
                        if pending.count >= Self.coalesceSize || ContinuousClock.now - pendingSince >= Self.coalesceDelay {
                            try flush()
                        }
                    }))
                }
                try flush()
                if position < end {
                    throw DAVError(.protocolViolation, method: "GET", path: path,
                                   detail: "the server sent \(position - before) of \(end - before) bytes")
                }
            } catch {
                content.condition.lock()
                cancelled = fetch.cancelled
                content.condition.unlock()
                if cancelled { break }
                let wrapped = FSError.wrap(error)
                // A connection that broke after some bytes resumes from where it stopped;
                // the server's refusals and a fetch that made no progress end here.
                if case .remote(let dav) = wrapped, dav.kind == .transport || dav.kind == .protocolViolation,
                   position > before, Date() < deadline {
                    deadline = Date().addingTimeInterval(resumeBudget)
                    continue
                }
                failure = wrapped
                break
            }
        }
        if fetch.kind == .range, failure == nil, !cancelled {
            let seconds = MetadataCache.seconds(ContinuousClock.now - began)
            latency.withLock { average in
                let blended: Double = average.samples == 0 ? seconds : 0.8 * average.seconds + 0.2 * seconds
                average = (blended, average.samples + 1)
            }
        }
        content.condition.lock()
        content.fetches.removeAll { $0 === fetch }
        if let failure {
            if position < end { content.recordFailure(position..<end, failure) }
            if case .remote(let dav) = failure, dav.kind == .preconditionFailed || dav.kind == .notFound {
                content.condition.unlock()
                cache.discard(content)
                content.condition.lock()
            }
        }
        content.condition.broadcast()
        content.condition.unlock()
    }

    /// Writes a received chunk at `offset` of the local file and marks it held, unless the
    /// fetch was cancelled: then nothing more of it is stored and the transfer ends. A stream
    /// then waits while it is too far ahead of its readers; kept waiting past
    /// `policy.parkLimit` it cancels itself.
    private static func store(_ chunk: UnsafeRawBufferPointer, at offset: Int64, for fetch: ContentFetch,
                              in content: CachedContent, policy: ReadAhead) throws {
        content.condition.lock()
        let stop = fetch.cancelled
        content.condition.unlock()
        if stop { throw HTTPError.cancelled }
        let written = try LocalFileWrite.all(content.fd, offset: offset, bytes: chunk, what: "the cached copy")
        content.condition.lock(); defer { content.condition.unlock() }
        guard !fetch.cancelled else { throw HTTPError.cancelled }
        let end = offset + Int64(written)
        content.held.insert(offset..<end)
        if fetch.firstByte == nil {
            fetch.firstByte = .now
            fetch.firstByteOffset = offset
        }
        fetch.remaining = min(end, fetch.remaining.upperBound)..<fetch.remaining.upperBound
        content.condition.broadcast()
        guard fetch.kind == .stream, !fetch.remaining.isEmpty else { return }
        // Back-pressure: ahead of the readers by at most what they have read since the stream
        // began (at least `initialWindow`, at most `streamAhead`).
        let parkedUntil = Date().addingTimeInterval(policy.parkLimit)
        func tooFarAhead() -> Bool {
            let allowance = min(policy.streamAhead, max(policy.initialWindow, fetch.readerEnd - fetch.start))
            return fetch.remaining.lowerBound - fetch.readerEnd > allowance
        }
        while !fetch.cancelled && tooFarAhead() {
            if !content.condition.wait(until: parkedUntil) && tooFarAhead() { content.cancel(fetch) }
        }
        if fetch.cancelled { throw HTTPError.cancelled }
    }
}
