@testable import FileSystem
import FileSystemInterface
import Foundation
import RemoteCache
import TestSupport
import Testing

/// A process that makes one file system after another (the model tests' remounts) must not keep
/// the threads of those it dropped: a 100,000-operation model run once reached 29,000 threads
/// and starved the machine of processes.
@Suite("Dropped file systems leave no threads behind (in process)")
struct LifetimeTests {
    @Test("a dropped file system's content fetcher ends its worker threads")
    func fetcherThreadsEnd() {
        let store = MemoryStore()
        weak var pool: WorkerPool?
        do {
            let cache = MetadataCache(client: store.view("metadata"), configuration: .init(freshness: .seconds(600), pollInterval: nil))
            let fs = FileSystem(cache: cache, reader: store.view("reader"))
            pool = fs.fetcher.pool
            withExtendedLifetime(fs) {}
        }
        // Each of the pool's threads holds it until it returns: released, they have all ended.
        var released = false
        for _ in 0..<1000 where !released {
            usleep(10_000)
            released = pool == nil
        }
        #expect(released, "the fetcher's threads still hold its pool 10 s after the file system went")
    }
}
