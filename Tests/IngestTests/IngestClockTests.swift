import Foundation
@testable import Ingest
import TestSupport
import Testing

/// The ingest service's times on a manual clock, in process against `MemoryStore` with the
/// real catalog and `ncfs-derive`: the quiet delay before a file is taken, a failed item's
/// backoff, and the day of the date path. What must *not* have happened yet is checked after a
/// short real pause (the scheduler and the workers run on their own threads).
@Suite("Ingest delays on a manual clock (in process)", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: IngestRig.missing == nil, "\(IngestRig.missing ?? "")"))
struct IngestClockTests {
    /// Polls `condition` every 10 ms for up to 10 s of real time.
    static func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
        for _ in 0..<1000 {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }

    static func items(_ catalog: SQLiteCatalog) throws -> [IngestItem] {
        try catalog.items(states: [], limit: nil).sorted { $0.id < $1.id }
    }

    @Test("a file closed in incoming/ is taken once the clock passes its quiet delay, not before; writing it again starts the delay over")
    func quietDelay() throws {
        let rig = try IngestRig()
        let clock = ManualClock(start: IngestRig.clockStart)
        rig.settings.clock = clock
        rig.settings.quietDelay = 5
        let catalog = try SQLiteCatalog(path: rig.catalogPath)
        let service = try rig.service(catalog: catalog)
        service.start()
        let bytes = try IngestRig.photo(seed: 40)
        // What the file system tells the service at each close in incoming/.
        try rig.drop("IMG_40.jpg", Array(bytes.prefix(1000)))
        service.changed("IMG_40.jpg")
        clock.advance(by: 4.9)
        usleep(300_000)
        #expect(try Self.items(catalog).isEmpty, "4.9 s of the 5 s quiet delay")
        try rig.drop("IMG_40.jpg", bytes)
        service.changed("IMG_40.jpg")
        clock.advance(by: 4.9)
        usleep(300_000)
        #expect(try Self.items(catalog).isEmpty, "past the first close's delay, 4.9 s after the second close")
        clock.advance(by: 0.2)
        #expect(try Self.eventually { try Self.items(catalog).count == 1 }, "taken 5.1 s after the last close")
        let item = try #require(try rig.settle(service, catalog, count: 1).first)
        #expect(item.state == .succeeded && item.size == Int64(bytes.count), "\(item.state) \(item.persistError ?? "")")
        #expect(abs(item.createdAt.timeIntervalSince(IngestRig.clockStart) - 10) < 0.001, "taken at the clock's time: \(item.createdAt)")
        #expect(rig.store.entry(item.originalPath ?? "")?.content == bytes, "the second content")
    }

    @Test("a failed upload (503 on the original's PUT) is tried again when the clock passes the item's backoff (10 s ±25 %), not before")
    func retryBackoff() throws {
        let rig = try IngestRig(bulk: false)
        let clock = ManualClock(start: IngestRig.clockStart)
        rig.settings.clock = clock
        rig.settings.retryBase = 10
        rig.settings.retryCap = 300
        rig.store.failNext([.put], with: .unavailable)
        let bytes = try IngestRig.photo(seed: 41)
        try rig.drop("IMG_41.jpg", bytes)
        let catalog = try SQLiteCatalog(path: rig.catalogPath)
        let service = try rig.service(catalog: catalog)
        // A file found at the start is taken at once (it was quiet before the service ran).
        service.start()
        #expect(try Self.eventually { try Self.items(catalog).first?.attempts == 1 }, "the first attempt failed")
        let failed = try #require(try Self.items(catalog).first)
        #expect(failed.state == .uploading && failed.persistError?.contains("503") == true, "\(failed.state) \(failed.persistError ?? "")")
        let backoff = failed.nextAttemptAt.timeIntervalSince(clock.now)
        #expect(backoff >= 10 * 0.75 && backoff <= 10 * 1.25, "next attempt \(backoff) s after the failure")
        clock.advance(by: backoff - 0.05)
        usleep(300_000)
        #expect(rig.store.calls(.put) == 1, "50 ms before the next attempt")
        clock.advance(by: 0.1)
        let item = try #require(try rig.settle(service, catalog, count: 1).first)
        IngestMemoryTests.expectSucceeded(item, rig, original: rig.originalPath("IMG_41.jpg", day: rig.today))
        #expect(item.attempts == 1)
        #expect(rig.store.calls(.put) == 6, "the failed PUT, then the original's and four derivatives'")
    }

    /// 23:59:59 in New York is 04:59:59 the next day in UTC: the day is the settings' zone's.
    @Test("the day folder is the service clock's day in the settings' time zone: a file taken at 23:59:59 files under that day, one taken a second later under the next")
    func dayFromClock() throws {
        let rig = try IngestRig()
        let zone = try #require(TimeZone(identifier: "America/New_York"))
        rig.settings.timeZone = zone
        let clock = ManualClock(start: IngestRig.date(2031, 1, 2, 23, 59, 59, in: zone))
        rig.settings.clock = clock
        let bytes = try IngestRig.photo(seed: 42)
        try rig.drop("IMG_42.jpg", bytes)
        let catalog = try SQLiteCatalog(path: rig.catalogPath)
        let service = try rig.service(catalog: catalog)
        service.start()
        #expect(try Self.eventually { try Self.items(catalog).first?.state == .succeeded }, "the first file, before midnight")
        clock.advance(by: 1)
        let notes = Array("taken after midnight\n".utf8)
        try rig.drop("notes.txt", notes)
        service.changed("notes.txt")
        let items = try rig.settle(service, catalog, count: 2)
        try #require(items.count == 2)
        #expect(items[0].day == "2031/01_02" && items[1].day == "2031/01_03", "\(items.map { $0.day ?? "nil" })")
        IngestMemoryTests.expectSucceeded(items[0], rig, original: rig.settings.prefix + "/2031/01_02/original/IMG_42.jpg")
        #expect(items[0].derivatives.count == 4 && items[0].derivatives.allSatisfy { $0.path.hasPrefix(rig.settings.prefix + "/2031/01_02/") })
        IngestMemoryTests.expectSucceeded(items[1], rig, original: rig.settings.prefix + "/2031/01_03/original/notes.txt")
        #expect(rig.store.entry(rig.settings.prefix + "/2031/01_02/original/IMG_42.jpg")?.content == bytes)
        #expect(rig.store.entry(rig.settings.prefix + "/2031/01_03/original/notes.txt")?.content == notes)
    }
}
