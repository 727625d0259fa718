import Foundation
@testable import Ingest
import Testing

/// The catalog's guarantees, on a real SQLite file: one item per staged file while it is in
/// incoming/, one item per original path, duplicates found by content, counts and backfill.
@Suite("SQLite catalog")
struct SQLiteCatalogTests {
    let folder: URL
    let catalog: SQLiteCatalog

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-catalog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        catalog = try SQLiteCatalog(path: folder.appendingPathComponent("catalog.sqlite").path)
    }

    @Test("A staged file is taken once: a second item for the same staging path is refused until the first leaves incoming/")
    func oneItemPerStagedFile() throws {
        let now = Date()
        var first = try catalog.add(name: "a.jpg", stagingPath: "a.jpg", bucket: "p", size: 3, sourceMtime: 1, now: now)
        #expect(throws: CatalogError.self) { try catalog.add(name: "a.jpg", stagingPath: "a.jpg", bucket: "p", size: 3, sourceMtime: 1, now: now) }
        #expect(try catalog.inIncoming(stagingPath: "a.jpg")?.id == first.id)
        first.state = .succeeded
        first.stagingPath = nil
        try catalog.update(first)
        #expect(try catalog.inIncoming(stagingPath: "a.jpg") == nil)
        let second = try catalog.add(name: "a.jpg", stagingPath: "a.jpg", bucket: "p", size: 4, sourceMtime: 2, now: now)
        #expect(second.id != first.id)
    }

    @Test("Two items never reserve the same original path; reservedNames shows the other's reservation, not one's own")
    func oneItemPerOriginalPath() throws {
        var a = try catalog.add(name: "x.jpg", stagingPath: "1/x.jpg", bucket: "p", size: 1, sourceMtime: 1, now: Date())
        var b = try catalog.add(name: "x.jpg", stagingPath: "2/x.jpg", bucket: "p", size: 2, sourceMtime: 1, now: Date())
        a.originalPath = "p/2026/01_02/original/x.jpg"
        a.state = .uploading
        try catalog.update(a)
        #expect(try catalog.reservedNames(in: "p/2026/01_02/original", excluding: b.id) == ["x.jpg"])
        #expect(try catalog.reservedNames(in: "p/2026/01_02/original", excluding: a.id).isEmpty)
        #expect(try catalog.reservedNames(in: "p/2026/01_02", excluding: b.id).isEmpty, "names of subfolders are not the folder's")
        b.originalPath = a.originalPath
        #expect(throws: CatalogError.self) { try catalog.update(b) }
    }

    @Test("holder(sha256:) finds the earliest item owning that content on the server, not pending or failed ones")
    func duplicates() throws {
        var a = try catalog.add(name: "a", stagingPath: "a", bucket: "p", size: 1, sourceMtime: 1, now: Date())
        var b = try catalog.add(name: "b", stagingPath: "b", bucket: "p", size: 1, sourceMtime: 1, now: Date())
        a.sha256 = "abc"
        b.sha256 = "abc"
        try catalog.update(a)
        try catalog.update(b)
        #expect(try catalog.holder(sha256: "abc", excluding: b.id) == nil, "a pending item owns nothing yet")
        a.originalPath = "p/a"
        a.state = .succeeded
        try catalog.update(a)
        #expect(try catalog.holder(sha256: "abc", excluding: b.id)?.id == a.id)
        #expect(try catalog.holder(sha256: "abc", excluding: a.id) == nil)
    }

    @Test("due() returns active items whose time has come, skips the excluded; reschedule() puts failed items back")
    func scheduling() throws {
        let now = Date()
        var a = try catalog.add(name: "a", stagingPath: "a", bucket: "p", size: 1, sourceMtime: 1, now: now)
        let b = try catalog.add(name: "b", stagingPath: "b", bucket: "p", size: 1, sourceMtime: 1, now: now)
        a.nextAttemptAt = now.addingTimeInterval(60)
        try catalog.update(a)
        #expect(try catalog.due(now: now, limit: 10, excluding: []).map(\.id) == [b.id])
        #expect(try catalog.due(now: now, limit: 10, excluding: [b.id]).isEmpty)
        #expect(try catalog.due(now: now.addingTimeInterval(61), limit: 10, excluding: []).map(\.id).sorted() == [a.id, b.id])
        a.state = .failed
        a.attempts = 8
        a.persistError = "503"
        try catalog.update(a)
        let rescheduled = try catalog.reschedule(limit: 50, now: now)
        #expect(rescheduled.map(\.id) == [a.id])
        let back = try #require(try catalog.item(a.id))
        #expect(back.state == .pending && back.attempts == 0 && back.persistError == nil)
    }

    @Test("Every field survives a round trip, and a read-only second connection sees committed state")
    func roundTrip() throws {
        var item = try catalog.add(name: "é #%.png", stagingPath: "d/é #%.png", bucket: "pindeck/media-uploads", size: 42, sourceMtime: 1_700_000_000, now: Date())
        item.state = .succeeded
        item.day = "2026/11_22"
        item.originalPath = "pindeck/media-uploads/2026/11_22/original/é #%.png"
        item.originalURL = "https://x/public.php/dav/files/T/2026/11_22/original/%C3%A9%20%23%25.png"
        item.derivatives = [StoredDerivative(kind: "w320", path: "p/low/x-w320.webp", url: "u", width: 320, height: 200, bytes: 999, mimeType: "image/webp")]
        item.sha256 = String(repeating: "a", count: 64)
        item.width = 640
        item.height = 400
        item.format = "png"
        item.captureDate = "2021-07-14T09:30:00"
        item.palette = ["#ffffff", "#000000"]
        item.isImage = true
        item.finishedAt = Date()
        try catalog.update(item)
        let reader = try SQLiteCatalog(readOnlyPath: folder.appendingPathComponent("catalog.sqlite").path)
        let back = try #require(try reader.item(item.id))
        #expect(back.originalPath == item.originalPath && back.derivatives == item.derivatives && back.palette == item.palette)
        #expect(back.width == 640 && back.isImage == true && back.captureDate == item.captureDate && back.name == "é #%.png")
        let counts = try reader.counts(now: Date(), rateWindow: 300)
        #expect(counts[.succeeded] == 1 && counts.bytes[.succeeded] == 42)
        #expect(try catalog.integrityCheck() == "ok")
    }
}
