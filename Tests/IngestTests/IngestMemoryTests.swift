import Foundation
@testable import Ingest
import TestSupport
import Testing
import WebDAV

/// The pipeline in process against `MemoryStore`: the real service, catalog (SQLite) and
/// `ncfs-derive`, with the server in memory, so every request is counted and any of them can
/// fail, lose its answer or meet a name someone else took.
@Suite("Ingest against the in-memory store", .serialized, .timeLimit(.minutes(5)),
       .enabled(if: IngestRig.missing == nil, "\(IngestRig.missing ?? "")"))
struct IngestMemoryTests {
    /// The files a photo `name` leaves on the server: its original and four derivatives.
    static func expectedFiles(_ rig: IngestRig, name: String, as stored: String? = nil, bytes: [UInt8], day: String) throws -> [String: [UInt8]] {
        let stored = stored ?? name
        var files = [rig.originalPath(stored, day: day): bytes]
        for (relative, content) in try IngestRig.derivatives(of: bytes, name: name, stem: IngestService.stem(stored)) {
            files[rig.settings.prefix + "/" + day + "/" + relative] = content
        }
        return files
    }

    /// Checks an item that succeeded: the catalog's record against what the store holds.
    static func expectSucceeded(_ item: IngestItem, _ rig: IngestRig, original: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(item.state == .succeeded, "\(item.name): \(item.state) \(item.persistError ?? "")", sourceLocation: sourceLocation)
        #expect(item.originalPath == original, sourceLocation: sourceLocation)
        #expect(item.stagingPath == nil, sourceLocation: sourceLocation)
        #expect(item.originalURL == rig.store.location.url(original), sourceLocation: sourceLocation)
        for derivative in item.derivatives {
            #expect(rig.store.entry(derivative.path)?.content.count == Int(derivative.bytes), "\(derivative.path)", sourceLocation: sourceLocation)
        }
    }

    @Test("a photo's whole life, bulk on and off: original at <prefix>/YYYY/MM_DD/original/<name>, preview and three WebP widths, catalog succeeded, staged copy gone",
          arguments: [true, false])
    func wholeLife(bulk: Bool) throws {
        let rig = try IngestRig(bulk: bulk)
        let bytes = try IngestRig.photo(seed: 1)
        try rig.drop("IMG_0001.jpg", bytes)
        let items = try rig.ingest(count: 1)
        let item = try #require(items.first)
        let day = try #require(item.day)
        #expect(day == IngestService.dayPath(item.createdAt, in: rig.settings.timeZone), "the day it was taken")
        let original = rig.originalPath("IMG_0001.jpg", day: day)
        Self.expectSucceeded(item, rig, original: original)
        #expect(Set(item.derivatives.map(\.kind)) == ["preview", "w320", "w768", "w1280"])
        #expect(item.derivatives.map(\.path).sorted() == [
            "\(rig.settings.prefix)/\(day)/high/IMG_0001-w1280.webp", "\(rig.settings.prefix)/\(day)/high/IMG_0001-w768.webp",
            "\(rig.settings.prefix)/\(day)/low/IMG_0001-w320.webp", "\(rig.settings.prefix)/\(day)/preview/IMG_0001-preview.jpg",
        ])
        #expect(item.width == 1300 && item.height == 900 && item.format == "jpeg" && item.isImage == true)
        #expect(rig.uploaded() == (try Self.expectedFiles(rig, name: "IMG_0001.jpg", bytes: bytes, day: day)), "exactly the five files, intact")
        #expect(rig.store.entry(original)?.mtime == item.sourceMtime, "the source's mtime")
        // The original carries its SHA-256 where it went by PUT; a bulk part carries an MD5 only.
        #expect(rig.store.entry(original)?.checksum == (bulk ? "" : "SHA256:" + (item.sha256 ?? "?")))
        #expect(!rig.staged("IMG_0001.jpg"), "the staged copy leaves incoming/")
        #expect(try FileManager.default.contentsOfDirectory(atPath: rig.workDirectory.path).isEmpty, "the work folder is tidied")
        if bulk {
            #expect(rig.store.calls(.bulkUpload) == 1 && rig.store.calls(.put) == 0 && rig.store.calls(.stat) == 0)
        } else {
            #expect(rig.store.calls(.bulkUpload) == 0 && rig.store.calls(.put) == 5 && rig.store.calls(.stat) == 5)
        }
    }

    /// The issue's target: about one request per photo, all five files together, once the
    /// batch's folders exist. Per batch: one listing of the original folder, one MKCOL per
    /// folder (prefix, year, day, original, preview, low, high: 8 with the prefix's two levels).
    @Test("requests per photo: one bulk request per photo plus a fixed 9 per batch; by PUT ten per photo (a PUT and a size check per file)",
          arguments: [true, false])
    func requestsPerPhoto(bulk: Bool) throws {
        let rig = try IngestRig(bulk: bulk)
        let count = 12
        var sources: [String: [UInt8]] = [:]
        for i in 0..<count {
            let name = String(format: "P%03d.jpg", i)
            sources[name] = try IngestRig.photo(seed: 100 + i)
            try rig.drop(name, sources[name]!)
        }
        let items = try rig.ingest(count: count)
        #expect(items.allSatisfy { $0.state == .succeeded }, "\(items.map { "\($0.name) \($0.state)" })")
        #expect(rig.uploaded().count == count * 5, "five files per photo")
        for item in items {
            #expect(rig.store.entry(item.originalPath ?? "")?.content == sources[item.name], "\(item.name) intact")
        }
        let total = rig.store.totalCalls
        let perPhoto = Double(total) / Double(count)
        #expect(rig.store.calls(.list) == 1, "one listing of the day's original folder for the batch")
        #expect(rig.store.calls(.mkcol) == 8, "each folder made once")
        if bulk {
            #expect(rig.store.calls(.bulkUpload) == count)
            #expect(total == count + 9, "\(total) requests for \(count) photos (\(perPhoto) per photo)")
        } else {
            #expect(rig.store.calls(.put) == 5 * count && rig.store.calls(.stat) == 5 * count)
            #expect(total == 10 * count + 9, "\(total) requests for \(count) photos (\(perPhoto) per photo)")
        }
        print("ingest in memory, bulk \(bulk ? "on" : "off"): \(total) requests for \(count) photos, \(String(format: "%.2f", perPhoto)) per photo")
    }

    @Test("a name taken on the server by other content: the photo becomes name (2), its derivatives name (2)-…, the other file untouched")
    func nameTakenOnServer() throws {
        let rig = try IngestRig()
        let day = rig.today
        let theirs = Array("someone else's photo".utf8)
        rig.store.serverWrite(rig.originalPath("IMG_7.jpg", day: day), theirs, checksum: "SHA256:" + String(repeating: "ab", count: 32))
        let bytes = try IngestRig.photo(seed: 7)
        try rig.drop("IMG_7.jpg", bytes)
        let item = try #require(try rig.ingest(count: 1).first)
        try #require(item.day == day, "the day of the rig's clock")
        Self.expectSucceeded(item, rig, original: rig.originalPath("IMG_7 (2).jpg", day: day))
        var expected = try Self.expectedFiles(rig, name: "IMG_7.jpg", as: "IMG_7 (2).jpg", bytes: bytes, day: day)
        expected[rig.originalPath("IMG_7.jpg", day: day)] = theirs
        #expect(rig.uploaded() == expected)
    }

    @Test("a name taken on the server after the batch listed the folder: the create-only PUT's 412 and the checksum send the photo to name (2)")
    func nameTakenMeanwhile() throws {
        let rig = try IngestRig(bulk: false)
        let day = rig.today
        let theirs = Array("written by another client a moment after our listing".utf8)
        let path = rig.originalPath("IMG_8.jpg", day: day)
        let store = rig.store
        store.intercept { operation, _, phase in
            // Right after the listing of the original folder: another client stores the name.
            if operation == .list && phase == .performed && store.entry(path) == nil {
                store.serverWrite(path, theirs, checksum: "SHA256:" + String(repeating: "cd", count: 32))
            }
        }
        let bytes = try IngestRig.photo(seed: 8)
        try rig.drop("IMG_8.jpg", bytes)
        let item = try #require(try rig.ingest(count: 1).first)
        try #require(item.day == day, "the day of the rig's clock")
        Self.expectSucceeded(item, rig, original: rig.originalPath("IMG_8 (2).jpg", day: day))
        var expected = try Self.expectedFiles(rig, name: "IMG_8.jpg", as: "IMG_8 (2).jpg", bytes: bytes, day: day)
        expected[path] = theirs
        #expect(rig.uploaded() == expected)
    }

    @Test("a file that is no image: the original is persisted with no derivatives, the reason recorded", arguments: [true, false])
    func notAnImage(bulk: Bool) throws {
        let rig = try IngestRig(bulk: bulk)
        let bytes = Array("not a photo, a shopping list\n".utf8)
        try rig.drop("notes.txt", bytes)
        let item = try #require(try rig.ingest(count: 1).first)
        let day = try #require(item.day)
        Self.expectSucceeded(item, rig, original: rig.originalPath("notes.txt", day: day))
        #expect(item.derivatives.isEmpty && item.isImage == false)
        #expect(item.derivativeError?.hasPrefix("not an image") == true, "\(item.derivativeError ?? "nil")")
        #expect(rig.uploaded() == [rig.originalPath("notes.txt", day: day): bytes])
    }

    @Test("the same content twice in one batch: one original, the second item a duplicate of the first with nothing written")
    func duplicateInBatch() throws {
        let rig = try IngestRig()
        let bytes = try IngestRig.photo(seed: 9)
        try rig.drop("first.jpg", bytes)
        try rig.drop("copy.jpg", bytes)
        let items = try rig.ingest(count: 2)
        let kept = try #require(items.first { $0.state == .succeeded })
        let duplicate = try #require(items.first { $0.state == .duplicate })
        #expect(duplicate.duplicateOf == kept.id && duplicate.originalPath == nil)
        let day = try #require(kept.day)
        #expect(rig.uploaded() == (try Self.expectedFiles(rig, name: kept.name, bytes: bytes, day: day)), "one photo's five files")
        #expect(rig.store.calls(.bulkUpload) == 1 && rig.store.calls(.put) == 0)
        #expect(!rig.staged("first.jpg") && !rig.staged("copy.jpg"), "both leave incoming/")
    }

    // MARK: Faults

    /// What each fault is, on which path it lands, and what it may cost.
    enum Fault: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case putUnavailable = "503 on the original's PUT (bulk off): the step is retried"
        case bulkUnavailable = "503 on the bulk POST: the original goes by PUT, the derivatives in a second bulk request"
        case bulkLost = "the bulk POST's answer lost: the create-only PUT's 412 and a hash of the stored file settle it"
        case putLost = "the original PUT's answer lost (bulk off): the retry's 412 and the checksum settle it"
        case derivativePutLost = "a derivative PUT's answer lost (bulk off): the step is retried and replaces it"
        case chunkedLost = "a chunked upload's assembling MOVE answer lost (bulk off, a 64 KiB chunk threshold): the 412 and a hash of the stored file settle it"

        var testDescription: String { rawValue }
        var bulk: Bool { self == .bulkUnavailable || self == .bulkLost }
    }

    @Test("faults: the original on the server exactly once, intact, no conflict copy, every derivative; catalog succeeded",
          arguments: Fault.allCases)
    func fault(_ fault: Fault) throws {
        let rig = try IngestRig(bulk: fault.bulk)
        let store = rig.store
        // The photo (~130 kB) goes up in chunks above this threshold.
        if fault == .chunkedLost { rig.settings.chunkThreshold = 64 << 10 }
        switch fault {
        case .putUnavailable: store.failNext([.put], with: .unavailable)
        case .bulkUnavailable: store.failNext([.bulkUpload], with: .unavailable)
        case .bulkLost: store.failNext([.bulkUpload], with: .transport, afterPerforming: true)
        case .putLost: store.failNext([.put], with: .transport, afterPerforming: true)
        case .chunkedLost: store.failNext([.uploadChunked], with: .transport, afterPerforming: true)
        case .derivativePutLost:
            // The second PUT: the first derivative's (the original went first).
            store.intercept { operation, path, phase in
                if operation == .put && phase == .before && path.contains("/preview/") && store.pendingFaults == 0
                    && store.calls(.put) == 1 {
                    store.failNext([.put], with: .transport, afterPerforming: true)
                }
            }
        }
        let bytes = try IngestRig.photo(seed: 20)
        try rig.drop("IMG_20.jpg", bytes)
        let item = try #require(try rig.ingest(count: 1).first)
        let day = try #require(item.day)
        #expect(store.pendingFaults == 0, "the fault was met")
        Self.expectSucceeded(item, rig, original: rig.originalPath("IMG_20.jpg", day: day))
        #expect(rig.uploaded() == (try Self.expectedFiles(rig, name: "IMG_20.jpg", bytes: bytes, day: day)),
                "exactly the five files, intact: \(rig.uploaded().keys.sorted())")
        switch fault {
        case .putUnavailable, .putLost, .derivativePutLost:
            #expect(item.attempts == 1, "one failed attempt, then success")
        case .chunkedLost:
            #expect(item.attempts == 1, "one failed attempt, then success")
            // The retry's create-only chunked upload meets the 412; a chunked upload carries no
            // checksum, so the stored file is hashed by download.
            #expect(store.calls(.uploadChunked) == 2 && store.calls(.put) == 4 && store.calls(.get) == 1)
        case .bulkUnavailable:
            #expect(item.attempts == 0, "the PUT path takes over within the attempt")
            #expect(store.calls(.bulkUpload) == 2 && store.calls(.put) == 1)
        case .bulkLost:
            #expect(item.attempts == 0)
            // The 412 finds a file without a checksum (bulk parts carry none): hashed by download.
            #expect(store.calls(.get) == 1, "one download to compare the stored original")
        }
        #expect(!rig.staged("IMG_20.jpg"))
    }

    @Test("a permanent refusal (403) of the original: item failed at once, the error reported in its attributes, the staged copy kept",
          arguments: [true, false])
    func permanentRefusal(bulk: Bool) throws {
        let rig = try IngestRig(bulk: bulk)
        let day = rig.today
        let path = rig.originalPath("IMG_30.jpg", day: day)
        if bulk { rig.store.failBulkPart(path) }
        rig.store.failNext([.put], with: .forbidden, count: 100)
        let bytes = try IngestRig.photo(seed: 30)
        try rig.drop("IMG_30.jpg", bytes)
        let catalog = try SQLiteCatalog(path: rig.catalogPath)
        let service = try rig.service(catalog: catalog)
        service.start()
        let item = try #require(try rig.settle(service, catalog, count: 1).first)
        try #require(item.day == day, "the day of the rig's clock")
        #expect(item.state == .failed && item.attempts == 1, "\(item.state) after \(item.attempts)")
        #expect(item.persistError?.contains("403") == true, "\(item.persistError ?? "nil")")
        #expect(item.stagingPath == "IMG_30.jpg" && rig.staged("IMG_30.jpg"), "the source is still held in incoming/")
        #expect(Array(try Data(contentsOf: rig.staging.appendingPathComponent("IMG_30.jpg"))) == bytes, "and intact")
        let attributes = service.attributes("IMG_30.jpg")
        #expect(attributes["user.ncfs.status"] == "failed")
        #expect(attributes["user.ncfs.error"]?.contains("403") == true)
        #expect(attributes["user.ncfs.remote_path"] == path)
        #expect(rig.store.entry(path) == nil, "nothing stored under the name")
        #expect(rig.log.all.contains { $0.hasPrefix("error") && $0.contains("IMG_30.jpg") }, "the failure is logged")
    }
}
