import Foundation

/// Inode numbers for paths, with the kernel's lookup counts.
///
/// Numbers come from a counter (root = 1) and are never reused, so a stale number can only
/// miss, never name another file. A node lives while the kernel holds lookups on it: every
/// successful lookup, and every readdirplus entry, adds one; `forget` subtracts; at zero the
/// node is dropped. Paths are the identity; a rename moves the nodes below it along.
final class InodeTable: @unchecked Sendable {
    // @unchecked: `nodes`, `byPath` and `next` are guarded by `lock`, a leaf lock (no other
    // lock is taken while it is held).
    struct Node {
        var path: String
        var lookups: UInt64
    }

    static let root: UInt64 = 1
    private let lock = NSLock()
    private var nodes: [UInt64: Node] = [InodeTable.root: Node(path: "", lookups: 1)]
    private var byPath: [String: UInt64] = ["": InodeTable.root]
    private var next: UInt64 = 2

    /// The inode for `path`, created if needed, with one more lookup.
    func lookup(_ path: String) -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        if let ino = byPath[path] {
            nodes[ino]!.lookups += 1
            return ino
        }
        let ino = next
        next += 1
        nodes[ino] = Node(path: path, lookups: 1)
        byPath[path] = ino
        return ino
    }

    /// The inode of `path` if the kernel knows it, without counting a lookup.
    func existing(_ path: String) -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        return byPath[path]
    }

    func path(of ino: UInt64) -> String? {
        lock.lock(); defer { lock.unlock() }
        return nodes[ino]?.path
    }

    /// Drops `count` lookups; the root is never dropped.
    func forget(_ ino: UInt64, count: UInt64) {
        lock.lock(); defer { lock.unlock() }
        guard ino != InodeTable.root, let node = nodes[ino] else { return }
        if node.lookups <= count {
            nodes[ino] = nil
            byPath[node.path] = nil
        } else {
            nodes[ino]!.lookups -= count
        }
    }

    /// The name `path` (and everything below it) no longer names its node: unlink, rmdir. The
    /// kernel may still hold the node (an open file); a new file created under the name gets
    /// a new number, so the kernel never mistakes it for the old one (and serves it the old
    /// one's cached pages and attributes).
    func detach(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        let prefix = path + "/"
        for (name, ino) in byPath where name == path || name.hasPrefix(prefix) {
            byPath[name] = nil
            nodes[ino]?.path = "\u{0}removed"
        }
    }

    /// `from` (and everything below it) is now called `to`. A node the kernel still holds at
    /// `to` is replaced: it keeps its number but no path, so it can only miss.
    func rename(_ from: String, to: String) {
        lock.lock(); defer { lock.unlock() }
        // The node at `to` (and below it) is replaced, as by an unlink.
        let toPrefix = to + "/"
        for (name, ino) in byPath where name == to || name.hasPrefix(toPrefix) {
            byPath[name] = nil
            nodes[ino]?.path = "\u{0}replaced"
        }
        let prefix = from + "/"
        for (path, ino) in byPath where path == from || path.hasPrefix(prefix) {
            let moved = to + path.dropFirst(from.count)
            byPath[path] = nil
            if let gone = byPath[moved], gone != ino { nodes[gone]?.path = "\u{0}replaced" }
            byPath[moved] = ino
            nodes[ino]?.path = moved
        }
    }

    func lookupCount(_ ino: UInt64) -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        return nodes[ino]?.lookups
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return nodes.count
    }
}
