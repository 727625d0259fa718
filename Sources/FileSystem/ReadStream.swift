import Foundation
import RemoteCache
import WebDAV

/// One open file being read: ranged GETs into a window buffer, growing the window while the
/// reads are sequential.
///
/// The state machine: a read inside the buffer is served from it. A read that continues
/// where the previous one ended (within one window: the kernel's readahead sends several
/// reads at once and the worker pool may run them slightly out of order) is sequential and
/// doubles the window before fetching `[offset, offset + window)`. Any other read is random:
/// the window falls back to its initial size and only the asked range (rounded up to the
/// granule) is fetched.
final class ReadStream: @unchecked Sendable {
    // @unchecked: the mutable fields are guarded by `lock`, which is held across the fetch so
    // that reads of one handle run one at a time (they would otherwise fetch the same window
    // twice). No other lock is taken while it is held.
    let path: String
    let size: Int64
    let etag: String
    let fileID: Int64
    private let lock = NSLock()
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0
    private var lastEnd: Int64 = 0
    private var window: Int64 = 0

    init(path: String, entry: RemoteEntry) {
        self.path = path
        self.size = entry.size
        self.etag = entry.etag
        self.fileID = entry.fileID
    }

    func read(offset: Int64, count: Int, client: WebDAVClient, policy: FileSystem.ReadAhead) throws(FSError) -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        guard offset < size, count > 0 else { return [] }
        let end = min(size, offset + Int64(count))
        let bufferEnd = bufferStart + Int64(buffer.count)
        if offset >= bufferStart && end <= bufferEnd {
            lastEnd = end
            return slice(offset, end)
        }
        let sequential = (offset == 0 && window == 0) || (window > 0 && abs(offset - lastEnd) <= max(window, policy.initialWindow))
        let fetchEnd: Int64
        if sequential {
            window = window == 0 ? policy.initialWindow : min(policy.maxWindow, window * 2)
            fetchEnd = min(size, max(end, offset + window))
        } else {
            window = 0
            let granule = policy.randomGranule
            fetchEnd = min(size, offset + (Int64(count) + granule - 1) / granule * granule)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(fetchEnd - offset))
        let result: WebDAVClient.GetResult
        do {
            result = try client.get(path, range: offset..<fetchEnd, sink: .stream({ chunk in
                bytes.append(contentsOf: chunk)
            }))
        } catch {
            buffer = []
            throw FSError.wrap(error)
        }
        if let served = result.etag, !etag.isEmpty, served != etag {
            buffer = []
            throw .stale
        }
        buffer = bytes
        bufferStart = offset
        lastEnd = min(end, offset + Int64(bytes.count))
        return slice(offset, lastEnd)
    }

    private func slice(_ from: Int64, _ to: Int64) -> [UInt8] {
        let lo = Int(from - bufferStart), hi = Int(to - bufferStart)
        return Array(buffer[lo..<max(lo, hi)])
    }
}
