import Foundation
@testable import Ingest
import Testing

/// `ncfs dismiss` and `ncfs backfill` at the catalog: only final, non-succeeded items are
/// removed; only items still failed are rescheduled.
@Suite("Catalog: dismiss and targeted reschedule")
struct DismissCatalogTests {
    @Test("dismiss(ids:) removes failed, duplicate and quarantined items (dropping references to them) and leaves active and succeeded ones; reschedule(ids:) touches only failed ones")
    func dismissAndReschedule() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-dismiss-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let catalog = try SQLiteCatalog(path: folder.appendingPathComponent("catalog.sqlite").path)
        func make(_ name: String, _ state: IngestItem.State, duplicateOf: Int64? = nil) throws -> IngestItem {
            var item = try catalog.add(name: name, stagingPath: name, bucket: "p", size: 1, sourceMtime: 1, now: Date())
            item.state = state
            item.duplicateOf = duplicateOf
            if !state.isInIncoming { item.stagingPath = nil }
            try catalog.update(item)
            return item
        }
        let quarantined = try make("q.jpg", .quarantined)
        let duplicate = try make("d.jpg", .duplicate, duplicateOf: quarantined.id)
        let failed = try make("f.jpg", .failed)
        let otherFailed = try make("g.jpg", .failed)
        let succeeded = try make("s.jpg", .succeeded)
        let pending = try make("p.jpg", .pending)

        let removed = try catalog.dismiss(ids: [quarantined.id, failed.id, succeeded.id, pending.id, 4242])
        #expect(removed.map(\.id) == [quarantined.id, failed.id])
        #expect(try catalog.item(quarantined.id) == nil && catalog.item(failed.id) == nil)
        #expect(try catalog.item(succeeded.id)?.state == .succeeded && catalog.item(pending.id)?.state == .pending)
        #expect(try catalog.item(duplicate.id)?.duplicateOf == nil, "the reference to a dismissed item is dropped")
        #expect(try catalog.counts(now: Date(), rateWindow: 60)[.failed] == 1)

        let rescheduled = try catalog.reschedule(ids: [otherFailed.id, succeeded.id], now: Date())
        #expect(rescheduled.map(\.id) == [otherFailed.id] && rescheduled.first?.state == .pending)
        #expect(try catalog.item(succeeded.id)?.state == .succeeded)
        #expect(try catalog.dismiss(ids: [duplicate.id]).map(\.id) == [duplicate.id])
    }
}
