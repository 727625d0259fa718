import FileSystem
import Foundation
import RemoteCache
import TestSupport
import Testing
import WebDAV

// 5 minutes: these tests take seconds, but share the machine with the ingest and imaging suites
// (libvips), which CI runs at the same time; the limit is there to catch a hang.
@Suite("FileSystem against the test server (no FUSE)", .timeLimit(.minutes(5)))
struct FileSystemTests {
    @Test("a 1000-entry folder: 1 PROPFIND cold, 0 requests warm; negative lookups free")
    func bigFolder() throws {
        let server = try populatedServer { files in
            for i in 0..<1000 { try write(files.appendingPathComponent("big/file-\(i).txt"), Array("entry \(i)".utf8)) }
        }
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        _ = try fs.listAll(FileSystem.rootInode)
        let cold = server.mark()
        let big = try fs.lookup(parent: FileSystem.rootInode, name: "big")
        let entries = try fs.listAll(big.inode).filter { $0.attributes != nil }
        for entry in entries { _ = try fs.getattr(entry.inode) }
        let coldRequests = server.requests(since: cold)
        #expect(entries.count == 1000)
        #expect(coldRequests.count == 1, "\(coldRequests.map { "\($0.method) \($0.path) \($0.depth ?? "-") \($0.status)" })")
        #expect(coldRequests.first?.method == "PROPFIND" && coldRequests.first?.depth == "1")

        let warm = server.mark()
        let again = try fs.listAll(big.inode)
        for entry in again where entry.attributes != nil {
            #expect(try fs.getattr(entry.inode).size == Int64("entry ".utf8.count + String(entry.name.dropFirst(5).dropLast(4)).count))
            _ = try fs.lookup(parent: big.inode, name: entry.name)
        }
        #expect(throws: FSError.self) { try fs.lookup(parent: big.inode, name: "missing.txt") }
        #expect(throws: FSError.self) { try fs.lookup(parent: FileSystem.rootInode, name: "nope") }
        #expect(server.requests(since: warm).count == 0)
    }

    @Test("readdirplus entries count as lookups; forget drops them")
    func lookupCounts() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("d/x"), [1]) }
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        let d = try fs.lookup(parent: FileSystem.rootInode, name: "d")
        let x = try #require(try fs.listAll(d.inode).first { $0.name == "x" })
        #expect(fs.lookupCount(x.inode) == 1)
        _ = try fs.lookup(parent: d.inode, name: "x")
        #expect(fs.lookupCount(x.inode) == 2)
        fs.forget(x.inode, count: 2)
        #expect(fs.lookupCount(x.inode) == nil)
        #expect(throws: FSError.self) { try fs.getattr(x.inode) }
    }

    @Test("folder st_size is oc:size, st_blocks 0; files ceil(size/512); dirsize=zero")
    func folderSizes() throws {
        let server = try populatedServer { files in
            try write(files.appendingPathComponent("t/a/one"), Array(repeating: 1, count: 1000))
            try write(files.appendingPathComponent("t/a/b/two"), Array(repeating: 2, count: 5000))
            try write(files.appendingPathComponent("t/three"), Array(repeating: 3, count: 1))
        }
        defer { server.stop() }
        let client = try server.client()
        let fs = try makeFileSystem(server)
        let t = try fs.lookup(parent: FileSystem.rootInode, name: "t")
        #expect(t.size == (try client.stat("t").size) && t.size == 6001)
        #expect(t.blocks == 0 && t.isDirectory)
        let a = try fs.lookup(parent: t.inode, name: "a")
        #expect(a.size == 6000)
        let three = try fs.lookup(parent: t.inode, name: "three")
        #expect(three.size == 1 && three.blocks == 1)
        let one = try fs.lookup(parent: a.inode, name: "one")
        #expect(one.blocks == 2)

        var zero = FileSystem.Options()
        zero.zeroFolderSizes = true
        let classic = try makeFileSystem(server, options: zero)
        #expect(try classic.lookup(parent: FileSystem.rootInode, name: "t").size == 0)
    }

    @Test("a change on the server is found by the poll, invalidated, and read fresh")
    func changeAfterPoll() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("p/q/f.txt"), Array("old".utf8)) }
        defer { server.stop() }
        let fs = try makeFileSystem(server, poll: .seconds(3600))
        let recorder = InvalidationRecorder()
        fs.invalidationObserver = recorder
        let p = try fs.lookup(parent: FileSystem.rootInode, name: "p")
        let q = try fs.lookup(parent: p.inode, name: "q")
        let f = try fs.lookup(parent: q.inode, name: "f.txt")
        #expect(try fs.readAll(f.inode) == Array("old".utf8))

        let mark = server.mark()
        #expect(try fs.cache.poll().isEmpty)
        #expect(server.requests(since: mark).count == 1, "an unchanged tree costs one request per poll")

        _ = try server.client().put("p/q/f.txt", body: .bytes(Array("newer".utf8)))
        _ = try server.client().put("p/added.txt", body: .bytes([1]))
        let changes = try fs.cache.poll()
        #expect(changes.contains { $0.folder == "p/q" && $0.names == ["f.txt"] })
        #expect(recorder.all.contains(.inode(f.inode)))
        #expect(recorder.all.contains(.entry(parent: p.inode, name: "added.txt")))
        #expect(try fs.getattr(f.inode).size == 5)
        #expect(try fs.readAll(f.inode) == Array("newer".utf8))
        #expect(try fs.lookup(parent: p.inode, name: "added.txt").size == 1)
    }

    @Test("server stopped mid-read: EIO promptly, never zeros; reads work after restart")
    func readFailsWithEIO() throws {
        // Large enough that the read-ahead started by the first read (three windows: 1, 2 and
        // 4 MiB) cannot reach the offset read with the server stopped.
        var bytes = [UInt8](repeating: 0, count: 24 << 20)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11) }
        let content = bytes
        let server = try populatedServer { files in try write(files.appendingPathComponent("r.bin"), content) }
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        let r = try fs.lookup(parent: FileSystem.rootInode, name: "r.bin")
        let (fh, _) = try fs.open(r.inode, writable: false)
        defer { fs.release(fh) }
        #expect(try fs.read(fh, offset: 0, count: 4096) == Array(content[0..<4096]))
        server.stop()
        let started = Date()
        do {
            let got = try fs.read(fh, offset: 20 << 20, count: 65536)
            Issue.record("read returned \(got.count) bytes with the server stopped")
        } catch {
            #expect(error.errno == EIO)
        }
        #expect(Date().timeIntervalSince(started) < 8)
        // Cached metadata still answers.
        #expect(try fs.getattr(r.inode).size == Int64(content.count))
        try server.start()
        #expect(try fs.read(fh, offset: 20 << 20, count: 65536) == Array(content[(20 << 20)..<((20 << 20) + 65536)]))
        #expect(try fs.read(fh, offset: 12345, count: 1000) == Array(content[12345..<13345]))
    }

    @Test("xattrs match the server's properties; setxattr is refused; listxattr works")
    func xattrs() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("x/y.txt"), Array("xattr".utf8)) }
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        let x = try fs.lookup(parent: FileSystem.rootInode, name: "x")
        let y = try fs.lookup(parent: x.inode, name: "y.txt")
        let remote = try server.client().stat("x/y.txt")
        func value(_ name: String) throws -> String {
            guard case .value(let bytes) = try fs.getxattr(y.inode, name: name, capacity: 4096) else { return "" }
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(try value("user.nextcloud.fileid") == String(remote.fileID!))
        #expect(try value("user.nextcloud.etag") == remote.etag)
        #expect(Permissions(try value("user.nextcloud.permissions")) == Permissions(remote.permissions!))
        #expect(try value("user.nextcloud.size") == "5")
        #expect(try fs.getxattr(y.inode, name: "user.nextcloud.size", capacity: 0) == .size(1))
        #expect(throws: FSError.self) { try fs.getxattr(y.inode, name: "user.other", capacity: 100) }
        #expect(throws: FSError.self) { try fs.setxattr(y.inode, name: "user.nextcloud.etag") }
        guard case .value(let list) = try fs.listxattr(y.inode, capacity: 4096) else { Issue.record("no list"); return }
        #expect(list.split(separator: 0).map { String(decoding: $0, as: UTF8.self) } == FileSystem.xattrNames)
    }

    @Test("bytes per cached entry with 100k entries")
    func memoryPerEntry() {
        // RSS is the whole process's, and other suites allocate at the same time (libvips in
        // the imaging tests): their growth can only add to ours. So measure three times,
        // keeping every listing alive (no attempt reuses another's freed pages), and take the
        // smallest growth.
        var kept: [FolderListing] = []
        var perEntry = Double.infinity
        for attempt in 0..<3 {
            let before = residentBytes()
            var entries: [RemoteEntry] = []
            entries.reserveCapacity(100_000)
            for i in 0..<100_000 {
                entries.append(RemoteEntry(name: "IMG_\(attempt)024\(String(format: "%07d", i)).jpg", isDirectory: false,
                                           size: Int64(i) * 1000, mtime: 1_700_000_000 + Int64(i),
                                           etag: String(format: "%013x", 0x6b03_2dd9_8a37 + i),
                                           fileID: Int64(i), permissions: Permissions("RGDNVW")))
            }
            let listing = FolderListing(path: "photos", folder: entries[0], children: entries)
            entries = []
            perEntry = min(perEntry, Double(residentBytes() - before) / 100_000)
            kept.append(listing)
        }
        print("bytes per cached entry (RSS growth, least of 3) (100k entries, 23-byte names, 13-char ETags): \(Int(perEntry))")
        #expect(kept.allSatisfy { $0.children.count == 100_000 })
        #expect(perEntry < 300)
    }
}

/// Resident set size from /proc/self/statm (pages × page size).
func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
    let pages = Int(text.split(separator: " ")[1]) ?? 0
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
