import Foundation
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
final class CachedContent: @unchecked Sendable {
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
    /// Ranges being fetched now.
    var inFlight: [Range<Int64>] = []
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
    var isBusy: Bool { openCount > 0 || !inFlight.isEmpty }

    /// The parts of `range` neither held nor being fetched. Caller holds `condition`.
    func unplanned(_ range: Range<Int64>) -> [Range<Int64>] {
        var covered = held
        for r in inFlight { covered.insert(r) }
        return covered.gaps(in: range)
    }

    /// Where the run of held-or-coming bytes from `offset` ends. Caller holds `condition`.
    func horizon(from offset: Int64) -> Int64 {
        var covered = held
        for r in inFlight { covered.insert(r) }
        return covered.runEnd(from: offset)
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
    var descriptor: Int32 {
        condition.lock(); defer { condition.unlock() }
        return fd
    }

    /// Copies `range` (which must be held) out of the local file `fd`.
    static func read(_ fd: Int32, _ range: Range<Int64>) throws(FSError) -> [UInt8] {
        let count = Int(range.upperBound - range.lowerBound)
        var done = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(range.lowerBound) + off_t(done))
                if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
            initialized = done
        }
        guard done == count else { throw .cacheFailure("reading the cached copy: \(done) of \(count) bytes") }
        return bytes
    }
}
