@testable import FileSystem
import Foundation
import RemoteCache
import TestSupport
import Testing
import WebDAV

/// Modes, owners, symbolic links and local times in-process (FileSystem+Posix), against the
/// emulator: what reaches the server and when, what a second mount reads back, and the
/// failure cases.
@Suite("POSIX attributes without FUSE", .serialized, .timeLimit(.minutes(5)))
struct PosixAttributeTests {
    static let root = FileSystem.Caller(uid: 0, gid: 0)

    /// A writable FileSystem on `server` with its state in `state` (a fresh folder by default).
    static func writable(_ server: TestServer, state: URL? = nil, options: FileSystem.Options = FileSystem.Options()) throws -> (FileSystem, URL) {
        let folder = state ?? FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-posix-state-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let fs = try makeFileSystem(server, freshness: .milliseconds(1), options: options)
        var writes = FileSystem.WriteOptions(directory: folder)
        writes.settleDelay = 0
        try fs.enableWrites(writes, client: try server.client())
        return (fs, folder)
    }

    /// Waits (bounded) until `condition` holds; false if it never did.
    static func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    static func posixProperty(_ server: TestServer, _ path: String) throws -> String? {
        try server.client().stat(path).posix
    }

    @Test("a new file's mode, chmod and chown before its upload: one PROPPATCH once it is uploaded, read back by a second mount")
    func coalescedAfterUpload() throws {
        let server = try populatedServer { _ in }
        defer { server.stop() }
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        let (created, fh) = try fs.create(parent: FileSystem.rootInode, name: "f.txt", exclusive: true, mode: 0o600, caller: Self.root)
        #expect(created.permissions == 0o600)
        _ = try Array("hello".utf8).withUnsafeBytes { bytes throws(FSError) in try fs.write(fh, offset: 0, bytes: bytes) }
        _ = try fs.setattr(created.inode, FileSystem.AttributeChanges(mode: 0o640), handle: fh, caller: Self.root)
        let changed = try fs.setattr(created.inode, FileSystem.AttributeChanges(uid: 1234, gid: 99), handle: fh, caller: Self.root)
        #expect(changed.permissions == 0o640 && changed.uid == 1234 && changed.gid == 99)
        let mark = server.mark()
        try fs.flush(fh)
        try fs.fsync(fh)
        fs.release(fh)
        #expect(try Self.eventually { try Self.posixProperty(server, "f.txt") == "100640 1234 99" })
        #expect(fs.drainAttributes(timeout: 5) == 0)
        let patches = server.requests(since: mark).filter { $0.method == "PROPPATCH" }
        #expect(patches.count == 1, "\(patches.map(\.path))")
        _ = fs.drainUploads(timeout: 5)

        // Another mount with an empty state folder: the server's property.
        let (other, otherState) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: otherState) }
        let seen = try other.lookup(parent: FileSystem.rootInode, name: "f.txt")
        #expect(seen.permissions == 0o640 && seen.uid == 1234 && seen.gid == 99 && !seen.isSymbolicLink)
        _ = other.drainUploads(timeout: 5)
        _ = other.drainAttributes(timeout: 1)
    }

    @Test("a file with the default mode and owner costs no record and no request, also when it was created 0600 and chmodded (rsync)")
    func defaultsCostNothing() throws {
        let server = try populatedServer { _ in }
        defer { server.stop() }
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        let (created, fh) = try fs.create(parent: FileSystem.rootInode, name: "plain.txt", exclusive: true, mode: 0o644,
                                          caller: FileSystem.Caller(uid: getuid(), gid: getgid()))
        try fs.flush(fh)
        try fs.fsync(fh)
        fs.release(fh)
        _ = try fs.setattr(created.inode, FileSystem.AttributeChanges(mode: 0o644), handle: nil, caller: Self.root)
        #expect(fs.attributeStore.record("plain.txt")?.posix == nil)
        // rsync's way: a 0600 temporary file, chmodded to the default before its upload.
        let (temporary, tfh) = try fs.create(parent: FileSystem.rootInode, name: ".tmp.x", exclusive: true, mode: 0o600,
                                             caller: FileSystem.Caller(uid: getuid(), gid: getgid()))
        _ = try fs.setattr(temporary.inode, FileSystem.AttributeChanges(mode: 0o644), handle: tfh, caller: Self.root)
        try fs.flush(tfh)
        try fs.fsync(tfh)
        fs.release(tfh)
        #expect(fs.attributeStore.record(".tmp.x")?.posix == nil)
        #expect(fs.attributeStore.pending(limit: 10).isEmpty)
        _ = fs.drainUploads(timeout: 5)
        #expect(fs.drainAttributes(timeout: 1) == 0)
        #expect(!server.requests().contains { $0.method == "PROPPATCH" })
    }

    @Test("chmod by a non-owner and chown to another user by a non-root caller: EPERM; the owner's chmod works")
    func ownerChecks() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("f.txt"), Array("x".utf8)) }
        defer { server.stop() }
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        let file = try fs.lookup(parent: FileSystem.rootInode, name: "f.txt")
        _ = try fs.setattr(file.inode, FileSystem.AttributeChanges(uid: 1000), handle: nil, caller: Self.root)
        let stranger = FileSystem.Caller(uid: 2000, gid: 2000), owner = FileSystem.Caller(uid: 1000, gid: 1000)
        #expect(throws: FSError.self) { try fs.setattr(file.inode, FileSystem.AttributeChanges(mode: 0o777), handle: nil, caller: stranger) }
        #expect(throws: FSError.self) { try fs.setattr(file.inode, FileSystem.AttributeChanges(uid: 2000), handle: nil, caller: owner) }
        #expect(FSError.notPermitted.errno == EPERM)
        #expect(try fs.setattr(file.inode, FileSystem.AttributeChanges(mode: 0o600), handle: nil, caller: owner).permissions == 0o600)
        #expect(try fs.getattr(file.inode).uid == 1000)
        _ = fs.drainAttributes(timeout: 5)
        _ = fs.drainUploads(timeout: 5)
    }

    @Test("the mount's defaults (uid, gid, umask) for entries without a property; a property that is not ncfs's, or does not fit the entry, is ignored")
    func defaultsAndForeignValues() throws {
        let server = try populatedServer { files in
            for name in ["garbage", "folder-type", "big-link", "good"] {
                try write(files.appendingPathComponent(name), Array(repeating: UInt8(ascii: "x"), count: name == "big-link" ? 5000 : 10))
            }
            try FileManager.default.createDirectory(at: files.appendingPathComponent("dir"), withIntermediateDirectories: true)
        }
        defer { server.stop() }
        let client = try server.client()
        try client.setPosixProperty("garbage", "rwxr-xr-x")
        try client.setPosixProperty("folder-type", "40700 0 0")
        try client.setPosixProperty("big-link", "120777 0 0")
        try client.setPosixProperty("good", "100600 7 8")
        var options = FileSystem.Options()
        options.uid = 500
        options.gid = 600
        options.umask = 0o027
        let fs = try makeFileSystem(server, options: options)
        func attributes(_ name: String) throws -> Attributes { try fs.lookup(parent: FileSystem.rootInode, name: name) }
        for name in ["garbage", "folder-type", "big-link"] {
            let a = try attributes(name)
            #expect(a.permissions == 0o640 && a.uid == 500 && a.gid == 600 && !a.isSymbolicLink, "\(name): \(a)")
        }
        #expect(try attributes("dir").permissions == 0o750)
        let good = try attributes("good")
        #expect(good.permissions == 0o600 && good.uid == 7 && good.gid == 8)
        #expect(PosixAttributes(property: "100644 1 2 3") == nil && PosixAttributes(property: "160644 1 2") == nil)
        #expect(PosixAttributes(property: "100644 1 2")?.property == "100644 1 2")
    }

    @Test("symlink: on the server at once as a marked small file; readlink; EEXIST (also when only the server has the name), ENAMETOOLONG, EINVAL")
    func symbolicLinks() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("plain"), Array("x".utf8)) }
        defer { server.stop() }
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        _ = try fs.listAll(FileSystem.rootInode)
        let link = try fs.symlink(parent: FileSystem.rootInode, name: "link", target: "some/where", caller: Self.root)
        #expect(link.isSymbolicLink && link.size == 10 && link.permissions == 0o777)
        #expect(try fs.readlink(link.inode) == "some/where")
        // Other clients: a small file with the target as content, marked by the property.
        #expect(try server.client().get("link").bytes == Array("some/where".utf8))
        #expect(try Self.posixProperty(server, "link") == "120777 0 0")

        // The name appeared on the server after this mount listed the folder.
        _ = try server.client().put("late", body: .text("x"))
        do {
            _ = try fs.symlink(parent: FileSystem.rootInode, name: "late", target: "t")
            Issue.record("symlink over a name the server has succeeded")
        } catch {
            #expect(error.errno == EEXIST)
        }
        #expect(try server.client().get("late").bytes == Array("x".utf8), "the server's file was replaced")
        do {
            _ = try fs.symlink(parent: FileSystem.rootInode, name: "long", target: String(repeating: "a", count: 5000))
            Issue.record("a 5000-byte target was accepted")
        } catch {
            #expect(error.errno == ENAMETOOLONG)
        }
        let plain = try fs.lookup(parent: FileSystem.rootInode, name: "plain")
        do {
            _ = try fs.readlink(plain.inode)
            Issue.record("readlink of a regular file succeeded")
        } catch {
            #expect(error.errno == EINVAL)
        }
        // A second mount (fresh cache) reads the link back.
        let other = try makeFileSystem(server)
        let seen = try other.lookup(parent: FileSystem.rootInode, name: "link")
        #expect(seen.isSymbolicLink)
        #expect(try other.readlink(seen.inode) == "some/where")
        _ = fs.drainUploads(timeout: 5)
        _ = fs.drainAttributes(timeout: 1)
    }

    @Test("a PROPPATCH answered 503 is tried again; one answered 403 is not, and the mode stays on this mount")
    func serverFailures() throws {
        let server = try populatedServer { files in
            try write(files.appendingPathComponent("busy"), Array("x".utf8))
            try write(files.appendingPathComponent("refused"), Array("x".utf8))
        }
        defer { server.stop() }
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        try server.fault(method: "PROPPATCH", pathContains: "busy", status: 503, count: 1)
        try server.fault(method: "PROPPATCH", pathContains: "refused", status: 403, count: -1)
        for name in ["busy", "refused"] {
            let file = try fs.lookup(parent: FileSystem.rootInode, name: name)
            _ = try fs.setattr(file.inode, FileSystem.AttributeChanges(mode: 0o600), handle: nil, caller: Self.root)
        }
        #expect(try Self.eventually { try Self.posixProperty(server, "busy") == "100600 \(getuid()) \(getgid())" }, "the 503 was not retried")
        #expect(Self.eventually { fs.attributeStore.pending(limit: 10).isEmpty }, "the 403 is retried forever")
        #expect(try Self.posixProperty(server, "refused") == nil)
        #expect(try fs.getattr(fs.lookup(parent: FileSystem.rootInode, name: "refused").inode).permissions == 0o600)
        #expect(fs.drainAttributes(timeout: 2) == 0)
        _ = fs.drainUploads(timeout: 5)
    }

    @Test("a file with a stored mode keeps it while this mount rewrites it and after the upload (the kernel checks access with it)")
    func rewriteKeepsMode() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("secret"), Array("old".utf8)) }
        defer { server.stop() }
        try server.client().setPosixProperty("secret", "100600 0 0")
        let (fs, state) = try Self.writable(server)
        defer { try? FileManager.default.removeItem(at: state) }
        let file = try fs.lookup(parent: FileSystem.rootInode, name: "secret")
        #expect(file.permissions == 0o600)
        let (fh, _) = try fs.open(file.inode, writable: true, truncate: true)
        _ = try Array("new content".utf8).withUnsafeBytes { bytes throws(FSError) in try fs.write(fh, offset: 0, bytes: bytes) }
        try fs.flush(fh)
        #expect(try fs.getattr(file.inode).permissions == 0o600, "while staged")
        try fs.fsync(fh)
        fs.release(fh)
        #expect(try fs.getattr(file.inode).permissions == 0o600, "after the upload")
        #expect(try Self.posixProperty(server, "secret") == "100600 0 0", "the upload kept the property")
        _ = fs.drainUploads(timeout: 5)
        _ = fs.drainAttributes(timeout: 1)
    }

    @Test("the state folder keeps modes and times across a restart; renames and removals move and drop them")
    func storeSurvivesRestart() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-attr-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        do {
            let store = try AttributeStore(directory: folder)
            store.update("a/x") { $0.posix = PosixAttributes(mode: 0o100600, uid: 1, gid: 2); $0.pending = true }
            store.update("a/y") { $0.mtime = 1_600_000_000_123_456_789 }
            store.update("b") { $0.ctime = 5 }
            store.update("d") { $0.ctime = 6 }
            // The flusher writes behind; a later rename and removal must win over that.
            #expect(Self.eventually(2) { (try? AttributeStore(directory: folder))?.record("d")?.ctime == 6 }, "written within the flush delay")
            store.rename(from: "a", to: "c", tree: true)
            store.remove("b", tree: false)
            store.close()
        }
        let store = try AttributeStore(directory: folder)
        #expect(store.record("a/x") == nil && store.record("b") == nil)
        #expect(store.record("c/x")?.posix == PosixAttributes(mode: 0o100600, uid: 1, gid: 2) && store.record("c/x")?.pending == true)
        #expect(store.record("c/y")?.mtime == 1_600_000_000_123_456_789)
        #expect(store.pending(limit: 10).map(\.path) == ["c/x"])
        store.stored("c/x", PosixAttributes(mode: 0o100600, uid: 1, gid: 2))
        #expect(store.pending(limit: 10).isEmpty)
        store.confirm("c/x", PosixAttributes(mode: 0o100600, uid: 1, gid: 2))
        #expect(store.record("c/x") == nil, "the server's copy took over")
        store.close()
    }
}
