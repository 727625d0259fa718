import FileSystem
import Foundation
import RemoteCache
import TestSupport
import Testing

/// Folder read-ahead for tree walks (`FolderWalkAhead`), against the test server.
@Suite("walk-ahead: a tree walk's next folders are listed in the background", .timeLimit(.minutes(5)))
struct WalkAheadTests {
    /// `t/` with `count` subfolders `s00`, `s01`, … of two files each, plus files between them.
    static func tree(count: Int) throws -> TestServer {
        try populatedServer { files in
            for i in 0..<count {
                let name = String(format: "s%02d", i)
                try write(files.appendingPathComponent("t/\(name)/a.txt"), [UInt8(i)])
                try write(files.appendingPathComponent("t/\(name)/b.txt"), [UInt8(i), 1])
                try write(files.appendingPathComponent("t/\(name)-file.txt"), [2])
            }
        }
    }

    static func name(_ i: Int) -> String { String(format: "s%02d", i) }

    /// Depth-1 PROPFIND paths the server got since `mark`, relative to the user's root.
    static func listings(_ server: TestServer, since mark: Int) -> [String] {
        server.requests(since: mark).filter { $0.method == "PROPFIND" && $0.depth == "1" }.map(\.path)
    }

    /// Waits (at most 10 s) until `condition` holds.
    static func eventually(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    @Test("a walk lists each folder once, the next ones before the walker asks")
    func walk() throws {
        let server = try Self.tree(count: 14)
        defer { server.stop() }
        var options = FileSystem.Options()
        options.walkAhead.window = 4
        let fs = try makeFileSystem(server, options: options)
        _ = try fs.listAll(FileSystem.rootInode)
        let mark = server.mark()
        let t = try fs.lookup(parent: FileSystem.rootInode, name: "t")
        _ = try fs.listAll(t.inode)
        let first = try fs.lookup(parent: t.inode, name: Self.name(0))
        _ = try fs.listAll(first.inode)

        // Opening s00 right after t: s01…s04 are listed without being asked for, s05 not yet.
        #expect(Self.eventually { (1...4).allSatisfy { fs.cache.cachedListing("t/" + Self.name($0)) != nil } })
        #expect(fs.cache.cachedListing("t/" + Self.name(5)) == nil)

        // Each further open moves the window on; the whole walk costs one listing per folder.
        for i in 1..<14 {
            let sub = try fs.lookup(parent: t.inode, name: Self.name(i))
            let entries = try fs.listAll(sub.inode)
            #expect(entries.map(\.name).sorted() == [".", "..", "a.txt", "b.txt"])
            if i + 4 < 14 {
                #expect(Self.eventually { fs.cache.cachedListing("t/" + Self.name(i + 4)) != nil })
            }
        }
        let listed = Self.listings(server, since: mark)
        #expect(listed.count == 15, "\(listed)")
        #expect(Set(listed).count == listed.count, "a folder was listed twice: \(listed)")
        #expect(fs.walkAheadListings >= 12)
    }

    @Test("a folder opened long after its parent, or with walk_ahead=0, lists nothing ahead")
    func noWalk() throws {
        let server = try Self.tree(count: 8)
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        let t = try fs.lookup(parent: FileSystem.rootInode, name: "t")
        _ = try fs.listAll(t.inode)
        usleep(1_200_000)
        let mark = server.mark()
        _ = try fs.listAll(try fs.lookup(parent: t.inode, name: Self.name(3)).inode)
        usleep(300_000)
        #expect(Self.listings(server, since: mark).count == 1)
        #expect(fs.walkAheadListings == 0)

        var off = FileSystem.Options()
        off.walkAhead.window = 0
        let quiet = try makeFileSystem(server, options: off)
        let t2 = try quiet.lookup(parent: FileSystem.rootInode, name: "t")
        _ = try quiet.listAll(t2.inode)
        let mark2 = server.mark()
        _ = try quiet.listAll(try quiet.lookup(parent: t2.inode, name: Self.name(0)).inode)
        usleep(300_000)
        #expect(Self.listings(server, since: mark2).count == 1)
        #expect(quiet.walkAheadListings == 0)
    }

    @Test("a folder gone from the server fails the walker's own open (ENOENT), the rest of the walk goes on")
    func goneFolder() throws {
        let server = try Self.tree(count: 6)
        defer { server.stop() }
        let fs = try makeFileSystem(server)
        let t = try fs.lookup(parent: FileSystem.rootInode, name: "t")
        _ = try fs.listAll(t.inode)
        // Removed behind the cache's back: t's cached listing still names it.
        try server.client().delete("t/\(Self.name(2))")
        _ = try fs.listAll(try fs.lookup(parent: t.inode, name: Self.name(0)).inode)
        #expect(Self.eventually { fs.walkAheadListings >= 5 && fs.cache.cachedListing("t/" + Self.name(5)) != nil })

        let gone = try fs.lookup(parent: t.inode, name: Self.name(2))
        do throws(FSError) {
            _ = try fs.listAll(gone.inode)
            Issue.record("listing a folder gone from the server succeeded")
        } catch {
            #expect(error.errno == ENOENT, "\(error)")
        }
        for i in [1, 3, 4, 5] {
            #expect(try fs.listAll(try fs.lookup(parent: t.inode, name: Self.name(i)).inode).count == 4)
        }
    }
}
