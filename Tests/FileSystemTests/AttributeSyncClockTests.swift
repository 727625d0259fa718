@testable import FileSystem
import Foundation
import RemoteCache
import Synchronization
import TestSupport
import Testing

/// The attribute sync's delays on a manual clock, in process against `MemoryStore`: the
/// coalescing delay after a change, the re-look backoff while the server fails, and the
/// unmount's drain. What must *not* have happened yet is checked after a short real pause
/// (the sync runs on its own thread).
@Suite("Attribute sync delays on a manual clock (in process)", .serialized, .timeLimit(.minutes(2)))
struct AttributeSyncClockTests {
    static let root = FileSystem.Caller(uid: 0, gid: 0)
    let clock = ManualClock()
    let store = MemoryStore()
    /// The client of write-back and the attribute sync (its faults go here).
    let background: MemoryStore
    let state = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-attr-clock-\(UUID().uuidString.prefix(8))")

    init() {
        background = store.view("write-back")
        // A file already on the server: its mode goes out at once (no first upload to wait for).
        store.serverWrite("f.txt", Array("on the server".utf8))
    }

    func mount() throws -> FileSystem {
        let cache = MetadataCache(client: store.view("metadata"), configuration: .init(freshness: .seconds(600), pollInterval: nil))
        let fs = FileSystem(cache: cache, reader: store.view("reader"))
        var options = FileSystem.WriteOptions(directory: state)
        options.settleDelay = 0
        options.clock = clock
        try fs.enableWrites(options, client: background)
        // The sync's thread reads its first deadline from the clock when it begins: let it
        // begin before the test moves the clock.
        usleep(100_000)
        return fs
    }

    /// chmod and chown of f.txt as root; returns what the server is to store.
    @discardableResult
    func change(_ fs: FileSystem, mode: UInt32? = nil, uid: UInt32? = nil) throws -> String {
        let inode = try fs.lookup(parent: FileSystem.rootInode, name: "f.txt").inode
        let after = try fs.setattr(inode, FileSystem.AttributeChanges(mode: mode, uid: uid), handle: nil, caller: Self.root)
        return PosixAttributes(mode: PosixAttributes.regular | UInt32(after.permissions), uid: after.uid, gid: after.gid).property
    }

    /// Polls `condition` every 10 ms for up to 10 s of real time.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<1000 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    var patches: Int { background.calls(.setPosixProperty) }
    var stored: String? { store.entry("f.txt")?.posix }

    func cleanUp(_ fs: FileSystem) {
        _ = fs.drainAttributes(timeout: 0)
        _ = fs.drainUploads(timeout: 0)
        try? FileManager.default.removeItem(at: state)
    }

    @Test("a chmod and a chown within the 0.5 s coalescing delay cost one PROPPATCH, sent when the clock passes it")
    func coalescing() throws {
        let fs = try mount()
        defer { cleanUp(fs) }
        // The sync's thread starts with a pass after the delay; the changes fall within it.
        try change(fs, mode: 0o600)
        clock.advance(by: 0.3)
        let expected = try change(fs, uid: 1234)
        usleep(300_000)
        #expect(patches == 0, "0.3 s into the 0.5 s delay (a change does not end it)")
        clock.advance(by: 0.2)
        #expect(eventually { stored == expected })
        #expect(expected == "100600 1234 \(try fs.lookup(parent: FileSystem.rootInode, name: "f.txt").gid)")
        #expect(patches == 1, "both changes in one request")
        #expect(eventually { fs.attributeStore.record("f.txt")?.pending == false })
    }

    /// `AttributeSync.relook`: 2 s after the first failed pass, 4 s after the second, each
    /// spread ±20 %. The jitter is drawn by the sync, so the test reads the deadline it drew
    /// (`nextLook`), checks it against those bounds, and advances the clock to just before it
    /// and then past it.
    @Test("a mode whose PROPPATCH meets 503 twice is tried again after 2 s, then 4 s (±20 %), not before, and lands")
    func relookBackoff() throws {
        background.failNext([.setModificationTime, .setPosixProperty], with: .unavailable, count: 2)
        let fs = try mount()
        defer { cleanUp(fs) }
        let sync = try #require(fs.attributeSync)
        let expected = try change(fs, mode: 0o640)
        clock.advance(by: 0.5)
        // After the n-th failed pass, a re-look 2 s doubling, ±20 %; nothing before it.
        for (failures, backoff) in [(1, 2.0), (2, 4.0)] {
            #expect(eventually { patches == failures && sync.nextLook != nil }, "PROPPATCH \(failures) failed; a re-look is set")
            let wait = try #require(sync.nextLook).timeIntervalSince(clock.now)
            #expect(wait >= backoff * 0.8 && wait <= backoff * 1.2, "\(wait) s after failed pass \(failures)")
            clock.advance(by: wait - 0.05)
            usleep(300_000)
            #expect(patches == failures, "50 ms before re-look \(failures)")
            if failures == 2 {
                #expect(stored == nil && fs.attributeStore.record("f.txt")?.pending == true, "still pending, kept locally")
            }
            clock.advance(by: 0.1)
        }
        #expect(eventually { stored == expected })
        #expect(eventually { sync.nextLook == nil }, "nothing left over: the sync waits for news only")
        #expect(patches == 3)
        #expect(fs.drainAttributes(timeout: 0) == 0)
    }

    /// The drain used to find the thread asleep in its coalescing delay (a `usleep` nothing
    /// could end); it stores what is pending itself, and the stop ends the thread's wait.
    @Test("the unmount's drain stores a pending mode at once and returns without the clock moving")
    func drainIsPrompt() throws {
        let fs = try mount()
        defer { try? FileManager.default.removeItem(at: state) }
        let expected = try change(fs, mode: 0o600)
        let left = Mutex<Int?>(nil)
        Thread { let count = fs.drainAttributes(timeout: 10); left.withLock { $0 = count } }.start()
        #expect(eventually { left.withLock { $0 } == 0 }, "nothing left for the next mount")
        #expect(stored == expected && patches == 1)
        if left.withLock({ $0 }) == nil { clock.advance(by: 60) }
        _ = fs.drainUploads(timeout: 0)
    }

    @Test("while the server fails, the drain tries again 0.2 s later by the clock, then leaves the change for the next mount")
    func drainGivesUp() throws {
        background.failNext([.setModificationTime, .setPosixProperty], with: .unavailable, count: 10)
        let fs = try mount()
        defer { try? FileManager.default.removeItem(at: state) }
        try change(fs, mode: 0o600)
        let left = Mutex<Int?>(nil)
        Thread { let count = fs.drainAttributes(timeout: 10); left.withLock { $0 = count } }.start()
        #expect(eventually { patches == 1 }, "the drain's first pass")
        usleep(300_000)
        #expect(patches == 1 && left.withLock { $0 } == nil, "the pause between passes is on the clock")
        clock.advance(by: 0.2)
        #expect(eventually { left.withLock { $0 } == 1 }, "a pass that stored nothing more ends the drain")
        #expect(patches == 2 && stored == nil)
        #expect(fs.attributeStore.record("f.txt")?.pending == true, "kept for the next mount")
        if left.withLock({ $0 }) == nil { clock.advance(by: 60) }
        _ = fs.drainUploads(timeout: 0)
    }
}
