import DerivationFormat
import FileSystemInterface
import Foundation
import Glibc
import WebDAV

/// An item's five files in one request: where the server takes bulk uploads (Nextcloud's
/// `POST /remote.php/dav/bulk`) and the original is small enough, the derivatives are made
/// first and the original goes up with them, instead of a PUT and a verifying PROPFIND for
/// each of the five. The server checks each part's MD5, so a stored entry needs no check.
///
/// Bulk requests have no conditions: the original goes in one only when the batch's listing
/// of its folder (`originals(in:)`, which its name was reserved from) shows the name free.
/// Anything unusual — the name present, the derivation failing, a part refused, an answer
/// lost — takes the step-by-step path (create-only PUT of the original, whose 412 and content
/// check settle what a lost answer left; derivatives by PUT, where replacing is right).
extension IngestService {
    /// Copies the derivation's facts onto the item.
    func apply(_ result: DerivationResult, to item: inout IngestItem) {
        item.isImage = result.isImage
        item.format = result.format
        item.width = result.width
        item.height = result.height
        item.captureDate = result.captureDate
        item.palette = result.palette
        item.derivativeError = result.notImage.map { "not an image: \($0)" } ?? result.error
    }

    /// The original and its derivatives in one bulk request. Returns the item in its next
    /// state (succeeded, or deriving when a derivative still has to go), or nil when the bulk
    /// path does not apply or failed before storing the original (the PUT path runs then).
    func uploadInBulk(_ start: IngestItem, local: String, path: String, checksum: String) throws -> IngestItem? {
        var item = start
        let name = PathBytes.lastComponent(path)
        guard store.route(size: item.size, path: path, limits: settings.uploadLimits) == .bulk,
              try originals(in: originalFolder(item))[name] == nil,
              let result = try? derivation(for: item),
              let original = Self.readWhole(local, size: item.size) else { return nil }
        var files = [BulkFile(path: path, content: original, mtime: item.sourceMtime)]
        guard let derivatives = try derivativeFiles(result, of: item) else { return nil }
        files += derivatives.map(\.file)
        let outcomes: [BulkOutcome]
        do {
            outcomes = try store.bulkUpload(files)
        } catch {
            logger.info("ingest: bulk upload of \(item.name) failed (\(error)); the create-only PUT finds out what the server has")
            return nil
        }
        guard case .stored = outcomes[0] else {
            logger.info("ingest: bulk upload did not store /\(path) (\(outcomes[0])); sending it by PUT")
            return nil
        }
        noteOriginal(name, in: originalFolder(item), checksums: [checksum])
        shareIfAsked(&item, path)
        apply(result, to: &item)
        let storedAll = zip(derivatives, outcomes.dropFirst()).allSatisfy { _, outcome in
            if case .stored = outcome { true } else { false }
        }
        guard storedAll else {
            // The original is there; the deriving step sends the derivatives again by PUT.
            item.state = .deriving
            try catalog.update(item)
            return item
        }
        item.derivatives = derivatives.map(\.record)
        item.state = .succeeded
        item.persistError = nil
        item.finishedAt = clock.now
        try catalog.update(item)
        logger.info("ingest: \(item.name) → /\(path) with \(derivatives.count) derivative(s) in one request\(item.derivativeError.map { " (\($0))" } ?? "")")
        return item
    }

    /// The derivatives in one bulk request (the original went by PUT). Returns the relative
    /// paths of those stored; the caller sends the others by PUT.
    func derivativesInBulk(_ result: DerivationResult, of item: IngestItem) throws -> Set<String> {
        guard settings.bulkUpload, result.derivatives.count > 1, store.bulkUploadsAvailable(),
              let derivatives = try derivativeFiles(result, of: item) else { return [] }
        let outcomes: [BulkOutcome]
        do {
            outcomes = try store.bulkUpload(derivatives.map(\.file))
        } catch {
            logger.info("ingest: bulk upload of \(item.name)'s derivatives failed (\(error)); sending them by PUT")
            return []
        }
        var stored: Set<String> = []
        for (derivative, outcome) in zip(derivatives, outcomes) {
            if case .stored = outcome { stored.insert(derivative.relativePath) }
        }
        return stored
    }

    /// Each derivative's bytes, server path and catalog record, its folder made. nil when one
    /// cannot go in a bulk request (too large, unreadable, a name the headers cannot carry).
    private func derivativeFiles(_ result: DerivationResult, of item: IngestItem) throws
        -> [(relativePath: String, file: BulkFile, record: StoredDerivative)]? {
        let dayFolder = settings.prefix + "/" + (item.day ?? "")
        let now = Int64(clock.now.timeIntervalSince1970)
        var files: [(relativePath: String, file: BulkFile, record: StoredDerivative)] = []
        for derivative in result.derivatives {
            let remote = dayFolder + "/" + derivative.relativePath
            let local = workFolder(item).appendingPathComponent(derivative.relativePath).path
            guard store.route(size: Int64(derivative.bytes), path: remote, limits: settings.uploadLimits) == .bulk,
                  let bytes = Self.readWhole(local, size: Int64(derivative.bytes)) else { return nil }
            try ensureFolder(PathBytes.beforeLastSlash(remote))
            files.append((derivative.relativePath, BulkFile(path: remote, content: bytes, mtime: now),
                          storedRecord(derivative, at: remote)))
        }
        return files
    }

    /// The catalog's record of `derivative`, stored at `remote`.
    func storedRecord(_ derivative: Derivative, at remote: String) -> StoredDerivative {
        StoredDerivative(kind: derivative.kind.rawValue, path: remote, url: url(for: remote), width: derivative.width,
                         height: derivative.height, bytes: Int64(derivative.bytes), mimeType: derivative.mimeType)
    }

    /// The whole file at `path` if it has exactly `size` bytes.
    static func readWhole(_ path: String, size: Int64) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bytes = LocalFileRead.bytes(fd, 0..<size)
        guard Int64(bytes.count) == size else { return nil }
        // One byte more would mean the file grew since it was measured.
        var extra: UInt8 = 0
        guard pread(fd, &extra, 1, off_t(size)) == 0 else { return nil }
        return bytes
    }
}
