import Foundation
import Journal
import Testing

/// A fresh folder under the system temporary folder, removed with everything in it when the
/// value goes away.
final class TemporaryFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// The permission bits of the file at `path`.
func mode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return try #require(attributes[.posixPermissions] as? Int)
}

extension UploadJournal {
    /// The remote paths of every pending upload, sorted.
    func paths() throws -> [String] { try all().map(\.remotePath).sorted() }
}
