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

    @Test("random reads fetch only what they ask (rounded to 128 KiB); sequential reads run ahead")
    func fetchPattern() throws {
        let content = Self.pattern(32 << 20, seed: 3)
        let server = try populatedServer { files in try write(files.appendingPathComponent("r.bin"), content) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, options: options(server.dataDir.appendingPathComponent("content")))
        let r = try fs.lookup(parent: FileSystem.rootInode, name: "r.bin")
        let (fh, _) = try fs.open(r.inode, writable: false)
        defer { fs.release(fh) }
        var mark = server.mark()
        #expect(try fs.read(fh, offset: 20_000_000, count: 4096) == Array(content[20_000_000..<20_004_096]))
        let random = server.requests(since: mark)
        #expect(random.count == 1 && random[0].range == "bytes=20000000-20131071", "\(random.map { $0.range ?? "-" })")

        mark = server.mark()
        var offset = 0
        while offset < 8 << 20 {
            #expect(try fs.read(fh, offset: Int64(offset), count: 128 << 10) == Array(content[offset..<offset + (128 << 10)]))
            offset += 128 << 10
        }
        let sequential = server.requests(since: mark).filter { $0.method == "GET" }
        // 8 MiB read in 64 reads of 128 KiB: a handful of growing windows, not 64 GETs.
        #expect(sequential.count >= 2 && sequential.count <= 8, "\(sequential.map { $0.range ?? "-" })")
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
