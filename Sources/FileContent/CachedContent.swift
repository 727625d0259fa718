import FileSystemInterface
import Foundation
import HTTPTransport
import RemoteCache
import WebDAV

/// The bytes of one version of one file (file id + ETag) held in a sparse local file, plus the
/// ranged GETs filling it.
///
/// Readers wait on `condition` until the range they need is held. Fetches write into the file
/// as bytes arrive and mark them held chunk by chunk, so a reader waiting for the start of a
/// 16 MiB window is answered as soon as its 128 KiB have arrived, not when the window is done.
/// A fetch that fails records the failure for the range it did not get; readers waiting for
/// that range get the error (EIO, or ESTALE when the version is gone), and the next read of
/// the range starts a new fetch, so a server that comes back serves reads again.
public final class CachedContent: @unchecked Sendable {
    // @unchecked: every `var` is guarded by `condition`'s lock. Lock order: the ContentCache's
    // lock may be held while taking this one, never the other way round.
    let key: String
    let fileID: Int64
    let etag: String
    let size: Int64
    let condition = NSCondition()
    /// The local file, open while a handle or a fetch uses it (-1 otherwise).
    var fd: Int32 = -1
    var held = ExtentSet()
    /// The GETs filling this content now.
    var fetches: [ContentFetch] = []
    /// A whole-file fetch of this version was started (it is never started twice).
    var wholeFetchStarted = false
    /// Recent failures: the range that could not be had, the error, and a sequence number so
    /// a reader only fails on failures that happened while it waited.
    var failures: [(range: Range<Int64>, error: FSError, sequence: UInt64)] = []
    var failureSequence: UInt64 = 0
    var openCount = 0
    /// The ContentCache's use counter when last opened or closed (least recently used first out).
    var lastUse: UInt64 = 0
    /// The server has another version: no new reader may use this one.
    var discarded = false

    /// Kept only while open: a version without an ETag cannot be recognised again.
    let singleUse: Bool

    init(key: String, fileID: Int64, etag: String, size: Int64, singleUse: Bool = false) {
        self.singleUse = singleUse
        self.key = key
        self.fileID = fileID
        self.etag = etag
        self.size = size
    }

    var isComplete: Bool { held.contains(0..<size) }
    var isBusy: Bool { openCount > 0 || !fetches.isEmpty }

    /// Held bytes plus the bytes the running fetches will still deliver; of a whole-file fetch
    /// only its next `wholeReach` bytes (nil: all of them), so a read further on is fetched by
    /// range rather than waiting for the whole file to get there. Caller holds `condition`.
    private func coming(wholeReach: Int64? = nil) -> ExtentSet {
        var covered = held
        for fetch in fetches {
            let rest = fetch.remaining
            if fetch.kind == .whole, let wholeReach {
                covered.insert(rest.lowerBound..<min(rest.upperBound, rest.lowerBound + wholeReach))
            } else {
                covered.insert(rest)
            }
        }
        return covered
    }

    /// The parts of `range` neither held nor coming (see `coming`). Caller holds `condition`.
    func unplanned(_ range: Range<Int64>, wholeReach: Int64? = nil) -> [Range<Int64>] {
        coming(wholeReach: wholeReach).gaps(in: range)
    }

    /// Where the run of held-or-coming bytes from `offset` ends. Caller holds `condition`.
    func horizon(from offset: Int64) -> Int64 {
        coming().runEnd(from: offset)
    }

    /// Where the next held byte at or after `offset` is (`size` if none): a stream started at
    /// `offset` stops there instead of fetching bytes held already. Caller holds `condition`.
    func nextHeld(from offset: Int64) -> Int64 {
        held.ranges.first { $0.upperBound > offset }.map { max(offset, $0.lowerBound) } ?? size
    }

    /// Registers `fetch` as running. Caller holds `condition`.
    func add(_ fetch: ContentFetch) {
        fetches.append(fetch)
    }

    /// Stops `fetch`: from now on nothing it receives is marked held, its transfer ends at its
    /// next chunk (or within a second, libcurl's progress callback, while no byte comes), and
    /// readers stop counting on it at once. Caller holds `condition`.
    func cancel(_ fetch: ContentFetch) {
        guard !fetch.cancelled else { return }
        fetch.cancelled = true
        fetch.cancellation.cancel()
        fetch.remaining = fetch.remaining.upperBound..<fetch.remaining.upperBound
        condition.broadcast()
    }

    /// A failure recorded after `sequence` that overlaps `range`. Caller holds `condition`.
    func failure(overlapping range: Range<Int64>, after sequence: UInt64) -> FSError? {
        failures.last { $0.sequence > sequence && $0.range.overlaps(range) }?.error
    }

    /// Records that `range` could not be fetched. Caller holds `condition`.
    func recordFailure(_ range: Range<Int64>, _ error: FSError) {
        failureSequence += 1
        failures.append((range, error, failureSequence))
        if failures.count > 32 { failures.removeFirst(failures.count - 32) }
    }

    /// The open local file (valid while a handle of this content is open).
    public var descriptor: Int32 {
        condition.lock(); defer { condition.unlock() }
        return fd
    }

    /// Copies `range` (which must be held) out of the local file `fd`.
    public static func read(_ fd: Int32, _ range: Range<Int64>) throws(FSError) -> [UInt8] {
        let bytes = LocalFileRead.bytes(fd, range)
        let count = range.upperBound - range.lowerBound
        guard Int64(bytes.count) == count else { throw .cacheFailure("reading the cached copy: \(bytes.count) of \(count) bytes") }
        return bytes
    }
}

/// One GET filling part of a `CachedContent`. Every `var` is guarded by the content's
/// condition.
public final class ContentFetch: @unchecked Sendable {
    // @unchecked: the vars are only touched under the owning content's `condition`.
    enum Kind {
        /// The missed range of a random read.
        case range
        /// A sequential reader's stream: one GET from where its bytes stop coming to the next
        /// held byte (normally the end of the file), at most `ReadAhead.streamAhead` ahead of its
        /// readers.
        case stream
        /// The whole file (from its first to its last missing byte), once, for random access.
        case whole
    }

    let kind: Kind
    /// Where the GET began.
    let start: Int64
    /// The bytes still to come: the lower bound moves up as bytes are stored.
    var remaining: Range<Int64>
    /// A stream's readers have read up to here (back-pressure measures from this).
    var readerEnd: Int64
    var cancelled = false
    /// Ends the transfer (the thread running it makes this its current cancellation).
    let cancellation = Cancellation()
    /// When its first byte arrived (the rate of a whole-file fetch is measured from there).
    var firstByte: ContinuousClock.Instant?
    var firstByteOffset: Int64 = 0

    init(_ kind: Kind, _ range: Range<Int64>) {
        self.kind = kind
        self.start = range.lowerBound
        self.remaining = range
        self.readerEnd = range.lowerBound
    }

    /// Bytes per second since the first byte; nil until a few milliseconds of data are in.
    func rate(now: ContinuousClock.Instant) -> Double? {
        guard let firstByte else { return nil }
        let seconds = MetadataCache.seconds(now - firstByte)
        guard seconds > 0.005 else { return nil }
        return Double(remaining.lowerBound - firstByteOffset) / seconds
    }
}
