import FileSystemInterface
import Foundation
@testable import Ingest
import Testing

/// The pure rules of ingest: which names are items, how a taken name is numbered, the date
/// folder of an instant, and the public URL of a path.
@Suite("Ingest naming rules")
struct NamingTests {
    @Test("Temp names of rsync, editors, file managers and browsers are not items; real names (dotfiles too) are",
          arguments: [
              (".photo.jpg.a1B2c3", true), (".IMG 1.JPG.Zz9zz9", true), ("notes.txt~", true), (".notes.txt.swp", true),
              (".goutputstream-ABC123", true), ("movie.mp4.part", true), ("file.crdownload", true),
              ("photo.jpg", false), (".hidden", false), (".config.json", false), ("a.b.c", false), (".x.toolong1", false),
          ])
    func temporaryNames(name: String, temporary: Bool) {
        #expect(IncomingNames.isTemporaryName(name) == temporary, "\(name)")
    }

    @Test("A taken name is numbered before its extension; names without one (or dotfiles) at the end")
    func numbering() {
        #expect(IngestService.numbered("IMG_1.jpg", 2) == "IMG_1 (2).jpg")
        #expect(IngestService.numbered("archive.tar.gz", 3) == "archive.tar (3).gz")
        #expect(IngestService.numbered("README", 2) == "README (2)")
        #expect(IngestService.numbered(".profile", 2) == ".profile (2)")
        #expect(IngestService.stem("photo (2).webp") == "photo (2)")
        #expect(IngestService.stem(".profile") == ".profile")
    }

    @Test("A capture time files under the camera's own day; unset or malformed clocks give nil (ingest day instead)")
    func captureDays() {
        #expect(IngestService.captureDay("2021-07-14T09:30:00") == "2021/07_14")
        #expect(IngestService.captureDay("2019-02-03T23:59:59") == "2019/02_03")
        #expect(IngestService.captureDay("0000-00-00T00:00:00") == nil)
        #expect(IngestService.captureDay("2021:07:14 09:30:00") == nil)
        #expect(IngestService.captureDay("") == nil)
    }

    @Test("The date folder of an instant depends on the configured zone")
    func dayFolders() throws {
        let instant = Date(timeIntervalSince1970: 1_700_000_000)  // 2023-11-14 22:13:20 UTC
        #expect(IngestService.dayPath(instant, in: TimeZone(identifier: "UTC")!) == "2023/11_14")
        #expect(IngestService.dayPath(instant, in: TimeZone(identifier: "Asia/Tokyo")!) == "2023/11_15")
        #expect(IngestService.dayPath(instant, in: TimeZone(identifier: "America/Los_Angeles")!) == "2023/11_14")
    }
}
