@testable import FileSystem
import Foundation
import Synchronization
import RemoteCache
import TestSupport
import Testing
import WebDAV

/// Write-back's delays on a manual clock, in process against `MemoryStore`: the settle delay
/// after a close and a failed upload's backoff pass when the test advances the clock, not in
/// wall-clock time. (What must *not* happen yet is checked after a short real pause: the
/// uploaders run on their own threads.)
@Suite("Write-back delays on a manual clock (in process)", .serialized, .timeLimit(.minutes(2)))
struct WriteBackClockTests {
    let clock = ManualClock()
    let store = MemoryStore()
    /// The write-back's own client (its faults go here).
    let background: MemoryStore
    let state = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-clock-\(UUID().uuidString.prefix(8))")

    init() { background = store.view("write-back") }

    func mount(settle: Double) throws -> FileSystem {
        let cache = MetadataCache(client: store.view("metadata"), configuration: .init(freshness: .seconds(600), pollInterval: nil))
        let fs = FileSystem(cache: cache, reader: store.view("reader"))
        var options = FileSystem.WriteOptions(directory: state)
        options.settleDelay = settle
        options.clock = clock
        try fs.enableWrites(options, client: background)
        return fs
    }

    /// Creates `name` at the root with `text`, closed.
    func write(_ fs: FileSystem, _ name: String, _ text: String) throws {
        let (_, handle) = try fs.create(parent: FileSystem.rootInode, name: name, exclusive: true)
        _ = try Array(text.utf8).withUnsafeBytes { bytes throws(FSError) in try fs.write(handle, offset: 0, bytes: bytes) }
        try fs.flush(handle)
        fs.release(handle)
    }

    /// Polls `condition` every 10 ms for up to 10 s of real time.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<1000 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// Whether the `n`th attempt at `file` has failed and been settled.
    static func failed(_ file: StagedFile, attempts n: Int) -> Bool {
        file.lock.withLock { file.upload.attempts == n && file.upload.failure != nil && !file.upload.uploading }
    }

    func stored(_ name: String) -> String? {
        store.entry(name).map { String(decoding: $0.content, as: UTF8.self) }
    }

    @Test("a closed file goes up when the clock passes its settle delay, not before")
    func settleDelay() throws {
        let fs = try mount(settle: 30)
        defer { _ = fs.drainUploads(timeout: 0); try? FileManager.default.removeItem(at: state) }
        try write(fs, "a.txt", "settled")
        clock.advance(by: 29)
        usleep(300_000)
        #expect(stored("a.txt") == nil, "29 s of the 30 s settle delay")
        clock.advance(by: 1)
        #expect(eventually { stored("a.txt") == "settled" })
        #expect(eventually { fs.pendingUploads.count == 0 })
    }

    @Test("a failed upload is retried when the clock passes its backoff (1 s, then 2 s), not before")
    func backoff() throws {
        let fs = try mount(settle: 0)
        defer { _ = fs.drainUploads(timeout: 0); try? FileManager.default.removeItem(at: state) }
        background.failNext([.put, .bulkUpload], with: .unavailable, count: 2)
        try write(fs, "b.txt", "retried")
        let file = try #require(fs.writeBack?.staged("b.txt"))
        func failed(attempts n: Int) -> Bool { Self.failed(file, attempts: n) }
        #expect(eventually { failed(attempts: 1) })
        clock.advance(by: 0.9)
        usleep(300_000)
        #expect(background.calls(.put) == 1, "within the first 1 s backoff")
        clock.advance(by: 0.1)
        #expect(eventually { failed(attempts: 2) })
        clock.advance(by: 1.9)
        usleep(300_000)
        #expect(background.calls(.put) == 2, "within the second, 2 s backoff")
        #expect(stored("b.txt") == nil)
        clock.advance(by: 0.1)
        #expect(eventually { stored("b.txt") == "retried" })
        #expect(background.calls(.put) == 3)
    }

    /// The unmount waits up to its timeout for pending uploads. A file whose backoff would end
    /// past that deadline used to wait it out and stay pending for the next mount (the
    /// in-memory model run, seed 505, at a remount after six failures in a row); during the
    /// drain a retry waits at most half the time left.
    @Test("during the unmount's drain a failed upload is retried within the drain's time, not after its full backoff")
    func drainShortensBackoff() throws {
        let fs = try mount(settle: 0)
        defer { try? FileManager.default.removeItem(at: state) }
        background.failNext([.put, .bulkUpload], with: .unavailable, count: 5)
        try write(fs, "c.txt", "drained")
        let file = try #require(fs.writeBack?.staged("c.txt"))
        func failed(attempts n: Int) -> Bool { Self.failed(file, attempts: n) }
        #expect(eventually { failed(attempts: 1) })
        clock.advance(by: 1)
        #expect(eventually { failed(attempts: 2) })
        clock.advance(by: 2)
        #expect(eventually { failed(attempts: 3) })
        clock.advance(by: 4)
        #expect(eventually { failed(attempts: 4) })
        // Backing off 8 s now. The drain (10 s) makes it due at once; the fifth attempt fails,
        // and its backoff (16 s) would end past the drain's deadline: it is 5 s instead.
        let left = Mutex<Int?>(nil)
        let drain = Thread {
            let count = fs.drainUploads(timeout: 10)
            left.withLock { $0 = count }
        }
        drain.start()
        #expect(eventually { failed(attempts: 5) })
        let retryAt = file.lock.withLock { file.upload.notBefore }
        #expect(retryAt == clock.now.addingTimeInterval(5), "half the drain's 10 s left, not the 16 s backoff")
        clock.advance(by: 5)
        #expect(eventually { stored("c.txt") == "drained" })
        #expect(eventually { left.withLock { $0 } == 0 }, "nothing left for the next mount")
        if left.withLock({ $0 }) == nil { clock.advance(by: 10) }
    }
}
