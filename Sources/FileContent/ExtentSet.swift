/// Which byte ranges of a file are held: sorted, disjoint, non-adjacent half-open ranges
/// (touching ranges are merged on insert, so a fully read file is one range).
public struct ExtentSet: Sendable, Equatable {
    private(set) var ranges: [Range<Int64>] = []

    init(_ ranges: [Range<Int64>] = []) {
        for range in ranges { insert(range) }
    }

    /// Bytes held.
    var total: Int64 { ranges.reduce(Int64(0)) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// Index of the first range whose upper bound is ≥ `offset` (binary search).
    private func firstEnding(atOrAfter offset: Int64) -> Int {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound < offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    mutating func insert(_ range: Range<Int64>) {
        guard !range.isEmpty else { return }
        let start = firstEnding(atOrAfter: range.lowerBound)
        var end = start
        var merged = range
        while end < ranges.count && ranges[end].lowerBound <= range.upperBound {
            merged = min(merged.lowerBound, ranges[end].lowerBound)..<max(merged.upperBound, ranges[end].upperBound)
            end += 1
        }
        ranges.replaceSubrange(start..<end, with: [merged])
    }

    func contains(_ range: Range<Int64>) -> Bool {
        guard !range.isEmpty else { return true }
        let i = firstEnding(atOrAfter: range.lowerBound + 1)
        return i < ranges.count && ranges[i].lowerBound <= range.lowerBound && ranges[i].upperBound >= range.upperBound
    }

    /// The parts of `range` not held, in order.
    func gaps(in range: Range<Int64>) -> [Range<Int64>] {
        var out: [Range<Int64>] = []
        var cursor = range.lowerBound
        var i = firstEnding(atOrAfter: range.lowerBound + 1)
        while cursor < range.upperBound {
            guard i < ranges.count, ranges[i].lowerBound < range.upperBound else {
                out.append(cursor..<range.upperBound)
                break
            }
            if ranges[i].lowerBound > cursor { out.append(cursor..<ranges[i].lowerBound) }
            cursor = max(cursor, ranges[i].upperBound)
            i += 1
        }
        return out
    }

    /// Where the held run that contains `offset` ends; `offset` itself when it is not held.
    func runEnd(from offset: Int64) -> Int64 {
        let i = firstEnding(atOrAfter: offset + 1)
        return i < ranges.count && ranges[i].lowerBound <= offset ? ranges[i].upperBound : offset
    }
}
