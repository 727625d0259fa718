@testable import FileContent
@testable import FileSystem
import Foundation
import TestSupport
import Testing

@Suite("Extent set")
struct ExtentSetTests {
    @Test("insert merges touching and overlapping ranges; gaps, contains and runEnd agree")
    func extents() {
        var set = ExtentSet()
        set.insert(10..<20)
        set.insert(30..<40)
        set.insert(20..<25)
        #expect(set.ranges == [10..<25, 30..<40])
        #expect(set.contains(12..<25) && !set.contains(12..<26) && !set.contains(0..<1) && set.contains(5..<5))
        #expect(set.gaps(in: 0..<50) == [0..<10, 25..<30, 40..<50])
        #expect(set.gaps(in: 12..<24) == [])
        #expect(set.runEnd(from: 10) == 25 && set.runEnd(from: 24) == 25 && set.runEnd(from: 25) == 25 && set.runEnd(from: 31) == 40)
        set.insert(0..<100)
        #expect(set.ranges == [0..<100] && set.total == 100)
        set.insert(100..<100)
        #expect(set.ranges == [0..<100])
    }

    @Test("random inserts match a bitmap")
    func randomAgainstBitmap() {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<200 {
            var set = ExtentSet()
            var bits = [Bool](repeating: false, count: 200)
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                let a = Int.random(in: 0..<200, using: &rng), b = Int.random(in: a...200, using: &rng)
                set.insert(Int64(a)..<Int64(b))
                for i in a..<b { bits[i] = true }
            }
            #expect(set.total == Int64(bits.filter { $0 }.count))
            let a = Int.random(in: 0..<200, using: &rng), b = Int.random(in: a...200, using: &rng)
            #expect(set.contains(Int64(a)..<Int64(b)) == bits[a..<b].allSatisfy { $0 })
            let missing = set.gaps(in: Int64(a)..<Int64(b)).flatMap { Array(Int($0.lowerBound)..<Int($0.upperBound)) }
            #expect(missing == (a..<b).filter { !bits[$0] })
        }
    }
}

@Suite("Content cache against the test server (no FUSE)", .serialized, .timeLimit(.minutes(3)))
struct ContentCacheTests {
    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 9)) ^ seed }
    }

    func options(_ dir: URL, limit: Int64 = 1 << 30) -> FileSystem.Options {
        var options = FileSystem.Options()
        options.contentCache.directory = dir
        options.contentCache.limit = limit
        return options
    }

    @Test("a second open of an unchanged file is served without a GET, also by a new FileSystem on the same folder")
    func reuse() throws {
        let content = Self.pattern(3 << 20, seed: 1)
        let server = try populatedServer { files in try write(files.appendingPathComponent("a.bin"), content) }
        defer { server.stop() }
        let dir = server.dataDir.appendingPathComponent("content")
        do {
            let fs = try makeFileSystem(server, options: options(dir))
            let a = try fs.lookup(parent: FileSystem.rootInode, name: "a.bin")
            #expect(try fs.readAll(a.inode) == content)
            let mark = server.mark()
            #expect(try fs.readAll(a.inode) == content)
            #expect(server.requests(since: mark).isEmpty)
            #expect(fs.contentCacheBytes == Int64(content.count))
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(names.count == 1 && !names[0].hasSuffix(".part"), "\(names)")
        var st = stat()
        #expect(stat(dir.path, &st) == 0 && st.st_mode & 0o777 == 0o700)

        let fs = try makeFileSystem(server, options: options(dir))
        let a = try fs.lookup(parent: FileSystem.rootInode, name: "a.bin")
        let mark = server.mark()
        #expect(try fs.readAll(a.inode) == content)
        #expect(try fs.readAll(a.inode) == content)
        #expect(!server.requests(since: mark).contains { $0.method == "GET" }, "served from the folder a previous run filled, every time")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).count == 1, "still kept")
    }

    @Test("a new version on the server replaces the cached one; the old file is removed")
    func newVersion() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("v.bin"), Self.pattern(200_000, seed: 1)) }
        defer { server.stop() }
        let dir = server.dataDir.appendingPathComponent("content")
        let fs = try makeFileSystem(server, options: options(dir))
        let v = try fs.lookup(parent: FileSystem.rootInode, name: "v.bin")
        #expect(try fs.readAll(v.inode) == Self.pattern(200_000, seed: 1))
        let newer = Self.pattern(150_000, seed: 2)
        _ = try server.client().put("v.bin", body: .bytes(newer))
        _ = try fs.cache.poll()
        #expect(try fs.readAll(v.inode) == newer)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).count == 1)
        #expect(fs.contentCacheBytes == 150_000)
    }

    @Test("the version changes while open: ESTALE, never the other version's bytes; reopened it reads the new one")
    func changedWhileOpen() throws {
        let old = Self.pattern(4 << 20, seed: 1)
        let server = try populatedServer { files in try write(files.appendingPathComponent("c.bin"), old) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, options: options(server.dataDir.appendingPathComponent("content")))
        let c = try fs.lookup(parent: FileSystem.rootInode, name: "c.bin")
        let (fh, _) = try fs.open(c.inode, writable: false)
        // A random read (not at 0) fetches only its 128 KiB, so the end of the file needs a GET later.
        #expect(try fs.read(fh, offset: 8192, count: 4096) == Array(old[8192..<12288]))
        let newer = Self.pattern(4 << 20, seed: 9)
        _ = try server.client().put("c.bin", body: .bytes(newer))
        do {
            let got = try fs.read(fh, offset: (4 << 20) - 8192, count: 4096)
            Issue.record("read \(got.count) bytes of a version that is gone")
        } catch {
            #expect(error.errno == ESTALE)
        }
        // What was read before the change still reads the same (the opened version).
        #expect(try fs.read(fh, offset: 8192, count: 4096) == Array(old[8192..<12288]))
        fs.release(fh)
        let again = try fs.lookup(parent: FileSystem.rootInode, name: "c.bin")
        #expect(try fs.readAll(again.inode) == newer)
    }

    @Test("past the size limit the least recently used closed version is evicted; open ones never")
    func eviction() throws {
        let server = try populatedServer { files in
            for i in 0..<3 { try write(files.appendingPathComponent("e\(i).bin"), Self.pattern(600_000, seed: UInt8(i))) }
        }
        defer { server.stop() }
        let dir = server.dataDir.appendingPathComponent("content")
        let fs = try makeFileSystem(server, options: options(dir, limit: 1_300_000))
        let inodes = try (0..<3).map { try fs.lookup(parent: FileSystem.rootInode, name: "e\($0).bin").inode }
        #expect(try fs.readAll(inodes[0]) == Self.pattern(600_000, seed: 0))
        #expect(try fs.readAll(inodes[1]) == Self.pattern(600_000, seed: 1))
        let (held, _) = try fs.open(inodes[0], writable: false)  // keeps e0 in use
        #expect(try fs.readAll(inodes[2]) == Self.pattern(600_000, seed: 2))
        // e1 (closed, least recently used) went; e0 is open and stays.
        #expect(fs.contentCacheBytes == 1_200_000)
        let mark = server.mark()
        #expect(try fs.read(held, offset: 0, count: 600_000) == Self.pattern(600_000, seed: 0))
        #expect(server.requests(since: mark).isEmpty)
        fs.release(held)
        #expect(try fs.readAll(inodes[1]) == Self.pattern(600_000, seed: 1))
        #expect(server.requests(since: mark).filter { $0.method == "GET" }.count >= 1, "e1 was fetched again")
        #expect(fs.contentCacheBytes <= 1_300_000)
    }

    @Test("a random read fetches only what it asks (rounded to 128 KiB); a sequential reader is served by one GET to the end of the file")
    func fetchPattern() throws {
        let content = Self.pattern(32 << 20, seed: 3)
        let server = try populatedServer { files in try write(files.appendingPathComponent("r.bin"), content) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, options: options(server.dataDir.appendingPathComponent("content")))
        let r = try fs.lookup(parent: FileSystem.rootInode, name: "r.bin")
        var (fh, _) = try fs.open(r.inode, writable: false)
        var mark = server.mark()
        #expect(try fs.read(fh, offset: 20_000_000, count: 4096) == Array(content[20_000_000..<20_004_096]))
        let random = server.requests(since: mark)
        #expect(random.count == 1 && random[0].range == "bytes=20000000-20131071", "\(random.map { $0.range ?? "-" })")
        fs.release(fh)

        (fh, _) = try fs.open(r.inode, writable: false)
        defer { fs.release(fh) }
        mark = server.mark()
        var offset = 0
        while offset < content.count {
            let count = min(128 << 10, content.count - offset)
            #expect(try fs.read(fh, offset: Int64(offset), count: count) == Array(content[offset..<offset + count]))
            offset += count
        }
        let sequential = server.requests(since: mark).filter { $0.method == "GET" }.map { $0.range ?? "-" }
        // One stream up to the bytes held already, one after them: never window after window.
        #expect(sequential == ["bytes=0-19999999", "bytes=20131072-33554431"], "\(sequential)")
    }

    /// The open handle's content (white-box: what the fetches left in it).
    func cachedContent(_ fs: FileSystem, _ fh: UInt64) -> CachedContent? {
        guard case .file(let stream)? = fs.handles.get(fh) else { return nil }
        return stream.content
    }

    @Test("a stream runs at most its read-ahead bound past its reader, then waits; a seek away cancels it, and the cancelled stream stores nothing more")
    func streamBackPressureAndCancel() throws {
        let content = Self.pattern(48 << 20, seed: 5)
        let server = try populatedServer { files in try write(files.appendingPathComponent("s.bin"), content) }
        defer { server.stop() }
        var opts = options(server.dataDir.appendingPathComponent("content"))
        opts.readAhead.parkLimit = 30
        let fs = try makeFileSystem(server, options: opts)
        let s = try fs.lookup(parent: FileSystem.rootInode, name: "s.bin")
        let (fh, _) = try fs.open(s.inode, writable: false)
        defer { fs.release(fh) }
        let cached = try #require(cachedContent(fs, fh))
        let mark = server.mark()
        for i in 0..<8 {
            #expect(try fs.read(fh, offset: Int64(i) << 17, count: 128 << 10) == Array(content[i << 17..<(i + 1) << 17]))
        }
        // The reader is at 1 MiB: the stream may run 1 MiB (what it has read) past it, plus the
        // chunk that crossed the line.
        Thread.sleep(forTimeInterval: 0.5)
        cached.condition.lock()
        let parked = cached.held.total
        let streams = cached.fetches.filter { $0.kind == .stream }.count
        cached.condition.unlock()
        #expect(parked >= 1 << 20 && parked <= (2 << 20) + (1 << 20), "held \(parked)")
        #expect(streams == 1)

        // A seek mid-stream: the right bytes, and the stream is gone.
        #expect(try fs.read(fh, offset: 40 << 20, count: 4096) == Array(content[40 << 20..<(40 << 20) + 4096]))
        Thread.sleep(forTimeInterval: 0.5)
        cached.condition.lock()
        let afterSeek = cached.held
        let running = cached.fetches.count
        cached.condition.unlock()
        #expect(running == 0)
        #expect(afterSeek.ranges.count == 2 && afterSeek.ranges[0].lowerBound == 0 && afterSeek.ranges[0].upperBound == parked
                && afterSeek.ranges[1] == (40 << 20)..<(40 << 20) + (128 << 10), "\(afterSeek.ranges)")
        // The emulator logs a request when it ends, and the cancelled stream may end after the
        // seek's GET: which two GETs were made is the point, not their order in the log.
        let gets = server.requests(since: mark).filter { $0.method == "GET" }.map { $0.range ?? "-" }
        #expect(gets.sorted() == ["bytes=0-50331647", "bytes=41943040-42074111"], "\(gets)")
        // Reading on from the start: the held bytes, then a new stream from where they end.
        #expect(try fs.read(fh, offset: 0, count: 4096) == Array(content[0..<4096]))
        #expect(try fs.read(fh, offset: 4096, count: 4 << 20) == Array(content[4096..<(4 << 20) + 4096]))
    }

    @Test("a stream cut off by the server mid-body: a seek cancels it while it waits, and no byte it did not deliver is ever held")
    func cancelledStalledStream() throws {
        let content = Self.pattern(16 << 20, seed: 6)
        let server = try populatedServer { files in try write(files.appendingPathComponent("t.bin"), content) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, options: options(server.dataDir.appendingPathComponent("content")))
        let t = try fs.lookup(parent: FileSystem.rootInode, name: "t.bin")
        let (fh, _) = try fs.open(t.inode, writable: false)
        defer { fs.release(fh) }
        let cached = try #require(cachedContent(fs, fh))
        // The stream sends 300,000 bytes, then nothing (for longer than the test takes).
        try server.fault(method: "GET", pathContains: "t.bin", action: "stall", seconds: 20, afterBytes: 300_000)
        #expect(try fs.read(fh, offset: 0, count: 128 << 10) == Array(content[0..<(128 << 10)]))
        // A seek further than the sequential slack (8 MiB).
        #expect(try fs.read(fh, offset: 12 << 20, count: 4096) == Array(content[12 << 20..<(12 << 20) + 4096]))
        // The stalled transfer ends within libcurl's progress interval (about a second).
        let deadline = Date().addingTimeInterval(3)
        var running = 1
        while running > 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            cached.condition.lock(); running = cached.fetches.count; cached.condition.unlock()
        }
        #expect(running == 0)
        cached.condition.lock()
        let held = cached.held.ranges
        cached.condition.unlock()
        #expect(held.count == 2 && held[0].lowerBound == 0 && held[0].upperBound <= 300_000 && held[0].upperBound >= 128 << 10
                && held[1] == (12 << 20)..<(12 << 20) + (128 << 10), "\(held)")
        // What the stream did not get is fetched again, right.
        #expect(try fs.read(fh, offset: 128 << 10, count: 1 << 20) == Array(content[(128 << 10)..<(128 << 10) + (1 << 20)]))
    }

    @Test("changed on the server mid-stream: the bytes already streamed are the opened version's, a read needing a new GET fails with ESTALE; never the new version's bytes")
    func changedMidStream() throws {
        let old = Self.pattern(16 << 20, seed: 7)
        let server = try populatedServer { files in try write(files.appendingPathComponent("m.bin"), old) }
        defer { server.stop() }
        var opts = options(server.dataDir.appendingPathComponent("content"))
        opts.readAhead.parkLimit = 30
        let fs = try makeFileSystem(server, options: opts)
        let m = try fs.lookup(parent: FileSystem.rootInode, name: "m.bin")
        let (fh, _) = try fs.open(m.inode, writable: false)
        defer { fs.release(fh) }
        for i in 0..<4 {
            #expect(try fs.read(fh, offset: Int64(i) << 17, count: 128 << 10) == Array(old[i << 17..<(i + 1) << 17]))
        }
        let newer = Self.pattern(16 << 20, seed: 8)
        _ = try server.client().put("m.bin", body: .bytes(newer))
        // The running stream was answered for the old version: what it delivers is that version.
        var offset = 4 << 17
        while offset < 4 << 20 {
            let got = try fs.read(fh, offset: Int64(offset), count: 128 << 10)
            #expect(got == Array(old[offset..<offset + got.count]), "at \(offset): bytes of another version")
            offset += got.count
        }
        // The reader is at 4 MiB, so the stream (which waits for its reader) is at most 4 MiB
        // ahead: a seek past it needs a GET with If-Match, which the new version refuses.
        var failure: FSError?
        do {
            let got = try fs.read(fh, offset: 15 << 20, count: 4096)
            Issue.record("read \(got.count) bytes past the stream after the change")
        } catch { failure = error }
        #expect(failure?.errno == ESTALE, "\(String(describing: failure))")
    }

    @Test("random access: the second random read starts one whole-file GET (files up to whole_file_max); every later read is local and the file is never fetched twice")
    func wholeFileOnce() throws {
        let content = Self.pattern(24 << 20, seed: 10)
        let server = try populatedServer { files in try write(files.appendingPathComponent("w.bin"), content) }
        defer { server.stop() }
        var opts = options(server.dataDir.appendingPathComponent("content"))
        opts.readAhead.wholeFileMax = 24 << 20
        opts.readAhead.wholeFileMinLatency = 0  // the test server answers in about a millisecond
        let fs = try makeFileSystem(server, options: opts)
        let w = try fs.lookup(parent: FileSystem.rootInode, name: "w.bin")
        var (fh, _) = try fs.open(w.inode, writable: false)
        let mark = server.mark()
        var rng = SeededGenerator(seed: 11)
        let offsets = (0..<64).map { _ in Int.random(in: 1..<(content.count - 4096), using: &rng) }
        for o in offsets {
            #expect(try fs.read(fh, offset: Int64(o), count: 4096) == Array(content[o..<o + 4096]))
        }
        fs.release(fh)
        let deadline = Date().addingTimeInterval(10)
        while fs.contentCacheBytes < Int64(content.count) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(fs.contentCacheBytes == Int64(content.count))
        let gets = server.requests(since: mark).filter { $0.method == "GET" }
        func length(_ request: TestServer.LoggedRequest) -> Int {
            let bounds = (request.range ?? "").dropFirst(6).split(separator: "-").compactMap { Int($0) }
            return bounds.count == 2 ? bounds[1] - bounds[0] + 1 : content.count
        }
        let whole = gets.filter { length($0) > 128 << 10 }
        let ranged = gets.filter { length($0) <= 128 << 10 }
        // One GET of the whole file (from its first to its last missing byte); every other GET
        // one read's 128 KiB.
        #expect(whole.count == 1 && whole.count + ranged.count == gets.count, "\(gets.map { $0.range ?? "-" })")
        #expect(ranged.count < 64)
        (fh, _) = try fs.open(w.inode, writable: false)
        let again = server.mark()
        for o in offsets.reversed() {
            #expect(try fs.read(fh, offset: Int64(o), count: 4096) == Array(content[o..<o + 4096]))
        }
        fs.release(fh)
        #expect(try fs.readAll(w.inode) == content)
        #expect(server.requests(since: again).isEmpty, "the file is held: no second download")
    }

    @Test("above whole_file_max random reads fetch only their ranges, and a single random read never starts a whole-file fetch")
    func wholeFileBound() throws {
        let content = Self.pattern(6 << 20, seed: 12)
        let server = try populatedServer { files in
            try write(files.appendingPathComponent("big.bin"), content)
            try write(files.appendingPathComponent("small.bin"), Array(content[0..<(2 << 20)]))
        }
        defer { server.stop() }
        var opts = options(server.dataDir.appendingPathComponent("content"))
        opts.readAhead.wholeFileMax = 4 << 20
        opts.readAhead.wholeFileMinLatency = 0
        let fs = try makeFileSystem(server, options: opts)
        let big = try fs.lookup(parent: FileSystem.rootInode, name: "big.bin")
        var (fh, _) = try fs.open(big.inode, writable: false)
        var mark = server.mark()
        for i in 0..<16 {
            let o = (i * 377_777 + 4096) % (content.count - 4096)
            #expect(try fs.read(fh, offset: Int64(o), count: 4096) == Array(content[o..<o + 4096]))
        }
        fs.release(fh)
        let gets = server.requests(since: mark).filter { $0.method == "GET" }
        #expect(gets.count == 16 && fs.contentCacheBytes <= 16 * (128 << 10), "\(gets.map { $0.range ?? "-" })")

        let small = try fs.lookup(parent: FileSystem.rootInode, name: "small.bin")
        (fh, _) = try fs.open(small.inode, writable: false)
        mark = server.mark()
        #expect(try fs.read(fh, offset: 1 << 20, count: 4096) == Array(content[(1 << 20)..<(1 << 20) + 4096]))
        fs.release(fh)
        #expect(server.requests(since: mark).map { $0.range ?? "-" } == ["bytes=1048576-1179647"], "one seek (a `tail`) is not random access yet")
    }

    @Test("whole-file fetch learns from the server: ranged GETs that take 50 ms (a real server) start it; under the threshold misses stay ranged")
    func wholeFileLearns() throws {
        let content = Self.pattern(3 << 20, seed: 13)
        let server = try populatedServer {
            files in try write(files.appendingPathComponent("slow.bin"), content)
            try write(files.appendingPathComponent("fast.bin"), content)
        }
        defer { server.stop() }
        let offsets = [2_500_000, 700_000, 1_900_000, 100_000, 2_900_000, 1_300_000]
        func ranges(_ name: String, minLatency: Double?) throws -> [String] {
            var opts = options(server.dataDir.appendingPathComponent("content-\(name)"))
            if let minLatency { opts.readAhead.wholeFileMinLatency = minLatency }
            let fs = try makeFileSystem(server, options: opts)
            let inode = try fs.lookup(parent: FileSystem.rootInode, name: name).inode
            let (fh, _) = try fs.open(inode, writable: false)
            let mark = server.mark()
            for o in offsets {
                #expect(try fs.read(fh, offset: Int64(o), count: 4096) == Array(content[o..<o + 4096]))
            }
            fs.release(fh)
            return server.requests(since: mark).filter { $0.method == "GET" }.map { $0.range ?? "-" }
        }
        // Every GET of slow.bin waits 50 ms, as a real server's PHP does.
        try server.fault(method: "GET", pathContains: "slow.bin", action: "delay", count: -1, seconds: 0.05)
        let slow = try ranges("slow.bin", minLatency: nil)
        #expect(slow.first == "bytes=2500000-2631071" && slow.contains("bytes=0-3145727") && slow.count < offsets.count + 1, "\(slow)")
        // A threshold no server reaches: every miss its own 128 KiB.
        let fast = try ranges("fast.bin", minLatency: 1000)
        #expect(fast.count == offsets.count && !fast.contains { $0.hasPrefix("bytes=0-3") }, "\(fast)")
    }

    @Test("a partly fetched version, closed and opened again, still serves the bytes it holds (and fetches only the rest)")
    func partialReopen() throws {
        let content = Self.pattern(1 << 20, seed: 4)
        let server = try populatedServer { files in try write(files.appendingPathComponent("p.bin"), content) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, options: options(server.dataDir.appendingPathComponent("content")))
        let p = try fs.lookup(parent: FileSystem.rootInode, name: "p.bin")
        var (fh, _) = try fs.open(p.inode, writable: false)
        #expect(try fs.read(fh, offset: 500_000, count: 4096) == Array(content[500_000..<504_096]))
        fs.release(fh)
        (fh, _) = try fs.open(p.inode, writable: false)
        defer { fs.release(fh) }
        let mark = server.mark()
        #expect(try fs.read(fh, offset: 500_000, count: 4096) == Array(content[500_000..<504_096]), "held bytes survive the reopen")
        #expect(server.requests(since: mark).isEmpty)
        #expect(try fs.read(fh, offset: 0, count: 1 << 20) == content)
    }

    @Test("an unusable cache folder: the problem is reported before mounting and opens fail with EIO")
    func unusableFolder() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("x.bin"), [1, 2, 3]) }
        defer { server.stop() }
        let blocker = server.dataDir.appendingPathComponent("plain-file")
        try write(blocker, [0])
        let fs = try makeFileSystem(server, options: options(blocker.appendingPathComponent("content")))
        #expect(fs.contentCacheProblem != nil)
        let x = try fs.lookup(parent: FileSystem.rootInode, name: "x.bin")
        #expect(throws: FSError.self) { try fs.open(x.inode, writable: false) }
        do { _ = try fs.open(x.inode, writable: false) } catch { #expect(error.errno == EIO) }
    }
}
