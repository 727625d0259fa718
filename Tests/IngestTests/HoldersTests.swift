import Foundation
@testable import Ingest
import Testing

/// Which earlier items a new copy may be a duplicate of: same content, same upload prefix,
/// owning (or making) an original.
@Suite("Catalog: duplicate candidates")
struct HoldersTests {
    @Test("holders(sha256:bucket:) lists items of that prefix owning an original, oldest first; other prefixes, pending and failed items are not candidates")
    func holdersPerPrefix() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-holders-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let catalog = try SQLiteCatalog(path: folder.appendingPathComponent("catalog.sqlite").path)
        func make(_ name: String, bucket: String, state: IngestItem.State, path: String?) throws -> IngestItem {
            var item = try catalog.add(name: name, stagingPath: name, bucket: bucket, size: 1, sourceMtime: 1, now: Date())
            item.sha256 = "abc"
            item.state = state
            item.originalPath = path
            if !state.isInIncoming { item.stagingPath = nil }
            try catalog.update(item)
            return item
        }
        let a = try make("a.jpg", bucket: "p", state: .succeeded, path: "p/2026/01_02/original/a.jpg")
        _ = try make("b.jpg", bucket: "q", state: .succeeded, path: "q/2026/01_02/original/b.jpg")
        let c = try make("c.jpg", bucket: "p", state: .uploading, path: "p/2026/01_02/original/c.jpg")
        _ = try make("d.jpg", bucket: "p", state: .failed, path: "p/2026/01_02/original/d.jpg")
        _ = try make("e.jpg", bucket: "p", state: .quarantined, path: "p/2026/01_02/original/e.jpg")
        let f = try make("f.jpg", bucket: "p", state: .pending, path: nil)
        #expect(try catalog.holders(sha256: "abc", bucket: "p", excluding: f.id).map(\.id) == [a.id, c.id])
        #expect(try catalog.holders(sha256: "abc", bucket: "p", excluding: a.id).map(\.id) == [c.id])
        #expect(try catalog.holders(sha256: "abc", bucket: "r", excluding: f.id).isEmpty)
        #expect(try catalog.holders(sha256: "def", bucket: "p", excluding: f.id).isEmpty)
    }
}
