import FileSystem
import Foundation
import Glibc
import RemoteCache
import Synchronization
import TestSupport
import Testing

/// incoming/ in process (no FUSE): the router hands every path inside it to the local folder,
/// and nothing of it reaches the server; its edges (the folder itself, renames across it,
/// links) answer with their errnos.
@Suite("incoming/ behind the router (in process, no FUSE)", .timeLimit(.minutes(2)))
struct IncomingRouterTests {
    /// The pipeline's side, as far as the folder talks to it.
    final class Observer: IncomingObserver, @unchecked Sendable {
        let events = Mutex<[String]>([])
        func permitChange<T>(_ paths: [String], _ change: () throws(FSError) -> T) throws(FSError) -> T {
            if paths.contains(where: { $0.hasSuffix("busy.jpg") }) { throw .busy }
            return try change()
        }
        func changed(_ path: String) { events.withLock { $0.append("changed \(path)") } }
        func removed(_ path: String) { events.withLock { $0.append("removed \(path)") } }
        func attributes(_ path: String) -> [String: String] { ["user.ncfs.status": "waiting:\(path)"] }
    }

    struct Mounted {
        let fs: FileSystem
        let store: MemoryStore
        let folder: IncomingFolder
        let observer: Observer
        let dir: URL
    }

    func mount() throws -> Mounted {
        let store = MemoryStore()
        // A server folder of the same name: incoming/ is shown over it, and it is never touched.
        store.serverWrite("incoming/server-file", Array("server".utf8))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-incoming-\(UUID().uuidString.prefix(8))")
        let cache = MetadataCache(client: store.view("metadata"), configuration: .init(freshness: .seconds(600), pollInterval: nil))
        let fs = FileSystem(cache: cache, reader: store.view("reader"))
        try fs.enableWrites(FileSystem.WriteOptions(directory: dir.appendingPathComponent("state")), client: store.view("write-back"))
        let folder = try IncomingFolder(name: "incoming", root: dir.appendingPathComponent("incoming"))
        let observer = Observer()
        folder.observer = observer
        fs.enableIncoming(folder)
        return Mounted(fs: fs, store: store, folder: folder, observer: observer, dir: dir)
    }

    func names(_ fs: FileSystem, _ inode: UInt64) throws -> [String] {
        let handle = try fs.opendir(inode)
        defer { fs.releasedir(handle) }
        var names: [String] = []
        try fs.readdir(handle, offset: 0, plus: false) { names.append($0.name); return true }
        return names.filter { $0 != "." && $0 != ".." }.sorted()
    }

    func errnoOf<T>(_ body: () throws(FSError) -> T) -> Int32? {
        do { _ = try body(); return nil } catch { return error.errno }
    }

    @Test("files and folders in incoming/ live in the local folder, the server's folder of that name is hidden and untouched")
    func localTree() throws {
        let m = try mount()
        defer { _ = m.fs.drainUploads(timeout: 10); try? FileManager.default.removeItem(at: m.dir) }
        let root = FileSystem.rootInode
        #expect(try names(m.fs, root) == ["incoming"])
        let incoming = try m.fs.lookup(parent: root, name: "incoming")
        #expect(incoming.isDirectory)
        #expect(try names(m.fs, incoming.inode).isEmpty, "the server's incoming/server-file is not shown")

        let album = try m.fs.mkdir(parent: incoming.inode, name: "album")
        let (created, handle) = try m.fs.create(parent: album.inode, name: "a.jpg", exclusive: true)
        _ = try Array("jpeg bytes".utf8).withUnsafeBytes { bytes throws(FSError) in try m.fs.write(handle, offset: 0, bytes: bytes) }
        try m.fs.flush(handle)
        m.fs.release(handle)
        #expect(try names(m.fs, album.inode) == ["a.jpg"])
        #expect(try m.fs.getattr(created.inode).size == 10)
        #expect(try String(contentsOfFile: m.folder.localPath("album/a.jpg"), encoding: .utf8) == "jpeg bytes")
        #expect(m.observer.events.withLock { $0 } == ["changed album/a.jpg"])

        let (reader, _) = try m.fs.open(created.inode, writable: false)
        #expect(try m.fs.read(reader, offset: 5, count: 100) == Array("bytes".utf8))
        m.fs.release(reader)

        _ = try m.fs.setattr(created.inode, size: 4, mtime: 1_500_000_000, handle: nil)
        let after = try m.fs.getattr(created.inode)
        #expect(after.size == 4 && after.mtime == 1_500_000_000)

        try m.fs.rename(parent: album.inode, name: "a.jpg", newParent: incoming.inode, newName: "b.jpg", noReplace: true)
        #expect(try names(m.fs, incoming.inode) == ["album", "b.jpg"])
        try m.fs.rmdir(parent: incoming.inode, name: "album")
        try m.fs.unlink(parent: incoming.inode, name: "b.jpg")
        #expect(try names(m.fs, incoming.inode).isEmpty)

        // Nothing of it reached the server: no upload, no folder, the server's file as it was.
        #expect(m.fs.drainUploads(timeout: 10) == 0)
        #expect(m.store.calls(.put) == 0 && m.store.calls(.bulkUpload) == 0 && m.store.calls(.mkcol) == 0
                && m.store.calls(.delete) == 0 && m.store.calls(.move) == 0)
        #expect(m.store.tree().files == ["incoming/server-file": Array("server".utf8)])
    }

    @Test("the edges: incoming/ itself cannot be removed or renamed (EBUSY), renames across it are EXDEV, links EPERM, a file the pipeline holds EBUSY")
    func edges() throws {
        let m = try mount()
        defer { _ = m.fs.drainUploads(timeout: 10); try? FileManager.default.removeItem(at: m.dir) }
        let root = FileSystem.rootInode
        let incoming = try m.fs.lookup(parent: root, name: "incoming")
        let (_, handle) = try m.fs.create(parent: incoming.inode, name: "in.jpg", exclusive: true)
        m.fs.release(handle)
        let (_, outside) = try m.fs.create(parent: root, name: "out.jpg", exclusive: true)
        m.fs.release(outside)

        #expect(errnoOf { () throws(FSError) in try m.fs.rmdir(parent: root, name: "incoming") } == EBUSY)
        #expect(errnoOf { () throws(FSError) in try m.fs.rename(parent: root, name: "incoming", newParent: root, newName: "other", noReplace: false) } == EBUSY)
        #expect(errnoOf { () throws(FSError) in try m.fs.unlink(parent: root, name: "incoming") } == EISDIR)
        #expect(errnoOf { () throws(FSError) in try m.fs.rename(parent: incoming.inode, name: "in.jpg", newParent: root, newName: "in.jpg", noReplace: false) } == EXDEV)
        #expect(errnoOf { () throws(FSError) in try m.fs.rename(parent: root, name: "out.jpg", newParent: incoming.inode, newName: "out.jpg", noReplace: false) } == EXDEV)
        #expect(errnoOf { () throws(FSError) in try m.fs.symlink(parent: incoming.inode, name: "link", target: "in.jpg") } == EPERM)
        #expect(errnoOf { () throws(FSError) in try m.fs.create(parent: incoming.inode, name: "in.jpg", exclusive: true) } == EEXIST)
        #expect(errnoOf { () throws(FSError) in try m.fs.create(parent: incoming.inode, name: "busy.jpg", exclusive: false) } == EBUSY)
        #expect(errnoOf { () throws(FSError) in try m.fs.lookup(parent: incoming.inode, name: "busy.jpg") } == ENOENT, "a refused create leaves nothing")
        #expect(FileManager.default.fileExists(atPath: m.folder.localPath("in.jpg")))
    }

    @Test("extended attributes: a file in incoming/ shows the pipeline's view, folders none")
    func pipelineAttributes() throws {
        let m = try mount()
        defer { _ = m.fs.drainUploads(timeout: 10); try? FileManager.default.removeItem(at: m.dir) }
        let incoming = try m.fs.lookup(parent: FileSystem.rootInode, name: "incoming")
        let (file, handle) = try m.fs.create(parent: incoming.inode, name: "p.jpg", exclusive: true)
        m.fs.release(handle)
        #expect(try m.fs.getxattr(file.inode, name: "user.ncfs.status", capacity: 100) == .value(Array("waiting:p.jpg".utf8)))
        #expect(try m.fs.listxattr(file.inode, capacity: 100) == .value(Array("user.ncfs.status\u{0}".utf8)))
        #expect(errnoOf { () throws(FSError) in try m.fs.getxattr(incoming.inode, name: "user.ncfs.status", capacity: 100) } == ENODATA)
        #expect(try m.fs.listxattr(incoming.inode, capacity: 100) == .value([]))
    }
}
