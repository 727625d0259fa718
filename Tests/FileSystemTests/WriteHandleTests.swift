import FileSystem
import Foundation
import TestSupport
import Testing

/// Descriptors of one staged file, as the kernel sends their calls: a close(2) is a flush,
/// and the release of that descriptor comes later, when the kernel gets to it.
@Suite("Write handles (in process, no FUSE)", .timeLimit(.minutes(5)))
struct WriteHandleTests {
    @Test("a late release of one descriptor records only its own writes: what another descriptor, still open, wrote since stays a partial rewrite (kept at unmount, its last closed version uploaded next time)")
    func lateReleaseRecordsOnlyItsOwnWrites() throws {
        let server = try populatedServer { _ in }
        defer { server.stop() }
        let state = server.dataDir.appendingPathComponent("state")
        func mount(settle: Double) throws -> FileSystem {
            let fs = try makeFileSystem(server)
            var options = FileSystem.WriteOptions(directory: state)
            options.settleDelay = settle
            try fs.enableWrites(options, client: try server.client())
            return fs
        }
        let fs = try mount(settle: 60)
        let (created, first) = try fs.create(parent: FileSystem.rootInode, name: "edited.txt", exclusive: true)
        _ = try Array("version one".utf8).withUnsafeBytes { bytes throws(FSError) in try fs.write(first, offset: 0, bytes: bytes) }
        try fs.flush(first)  // close(2): recorded; its release is still to come
        let (second, _) = try fs.open(created.inode, writable: true)
        _ = try Array("VERSION".utf8).withUnsafeBytes { bytes throws(FSError) in try fs.write(second, offset: 0, bytes: bytes) }
        fs.release(first)  // the kernel's release of the first descriptor, late

        let abandoned = fs.abandonOpenWrites()
        #expect(abandoned.kept == 1, "\(abandoned.lines)")
        #expect(abandoned.lines.contains { $0.contains("/edited.txt was still open for writing when the mount ended, partly rewritten") }, "\(abandoned.lines)")
        // Kept in the journal for the next start (the drain waits only for the others).
        #expect(fs.drainUploads(timeout: 10) == 0)
        #expect(!FileManager.default.fileExists(atPath: server.filesDir.appendingPathComponent("edited.txt").path))
        _ = second  // the mount ended with it open: its release never comes

        let again = try mount(settle: 0)
        #expect(again.drainUploads(timeout: 30) == 0)
        let stored = try String(contentsOf: server.filesDir.appendingPathComponent("edited.txt"), encoding: .utf8)
        #expect(stored == "version one", "the version its close recorded, not the partial rewrite")
    }
}
