import Foundation
import Ingest
import Journal
import WebDAV

// The shapes of every `--json` output. The keys are an interface (scripts and the tests read
// them), so each struct spells its keys out; a value ncfs does not know is `null` where the
// key was always present, and the key is left out where it was optional from the start.

/// One file or folder, as `ls`, `stat`, `search` and `trash list` print it.
struct ResourceJSON: Encodable {
    var path: String
    var name: String
    /// "file" or "folder".
    var type: String
    var etag: String?
    /// A file's length; a folder's recursive size (`oc:size`), null where the server has none.
    var size: Int64?
    var modified: Date?
    var fileid: Int64?
    var permissions: String?
    /// `stat` only, and only when the server sent checksums ("SHA256:…").
    var checksums: [String]?
    /// `trash list` only.
    var trash: Trash?

    struct Trash {
        /// The name `trash restore` and `trash rm` take.
        var item: String
        var originalLocation: String?
        var deleted: Date?
    }

    init(_ r: DAVResource) {
        path = r.path
        name = r.name
        type = r.isCollection ? "folder" : "file"
        etag = r.etag
        size = r.isCollection ? r.size : (r.contentLength ?? r.size)
        modified = r.lastModified
        fileid = r.fileID
        permissions = r.permissions
    }

    private enum Key: String, CodingKey {
        case path, name, type, etag, size, modified, fileid, permissions, checksums, item, originalLocation = "original_location", deleted
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(path, forKey: .path)
        try c.encode(name, forKey: .name)
        try c.encode(type, forKey: .type)
        // Optional.encode writes null: these keys are always present.
        try c.encode(etag, forKey: .etag)
        try c.encode(size, forKey: .size)
        try c.encode(modified.map(JSONOutput.iso), forKey: .modified)
        try c.encode(fileid, forKey: .fileid)
        try c.encode(permissions, forKey: .permissions)
        try c.encodeIfPresent(checksums, forKey: .checksums)
        if let trash {
            try c.encode(trash.item, forKey: .item)
            try c.encode(trash.originalLocation, forKey: .originalLocation)
            try c.encode(trash.deleted.map(JSONOutput.iso), forKey: .deleted)
        }
    }
}

/// `ncfs status --json`: the journal's pending uploads and the ingest progress.
struct StatusJSON: Encodable {
    var pending: Int
    var bytes: Int64
    var failed: Int
    var uploads: [Upload]
    var ingest: IngestJSON

    struct Upload: Encodable {
        var path: String
        var bytes: Int64
        var state: String
        var attempts: Int
        var ageSeconds: Int
        var mtime: Int64
        /// The last attempt's error; absent when there was none.
        var error: String?

        enum CodingKeys: String, CodingKey {
            case path, bytes, state, attempts, ageSeconds = "age_seconds", mtime, error
        }

        init(_ upload: PendingUpload, now: Date) {
            path = upload.remotePath
            bytes = upload.size
            state = upload.state.rawValue
            attempts = upload.attempts
            ageSeconds = Int(now.timeIntervalSince(upload.createdAt))
            mtime = upload.mtime
            error = upload.lastError
        }
    }

    init(uploads: [PendingUpload], ingest: IngestProgress, now: Date) {
        pending = uploads.count
        bytes = uploads.reduce(Int64(0)) { $0 + $1.size }
        failed = uploads.filter { $0.state == .failed }.count
        self.uploads = uploads.map { Upload($0, now: now) }
        self.ingest = IngestJSON(ingest)
    }
}

/// The `ingest` object of `ncfs status --json`: an item count per state (one key per state
/// name), the bytes per state, the files not taken yet, and the batch in progress.
struct IngestJSON: Encodable {
    var staged: Int
    var counts: [IngestItem.State: Int]
    var bytes: [String: Int64]
    var rateBytesPerSecond: Int?
    var etaSeconds: Int?
    var batch: Batch

    struct Batch: Encodable {
        var inProgress: Bool
        var total, finished, succeeded, duplicate, quarantined, failed: Int
        var pending, uploading, deriving, waiting: Int
        var remainingBytes, finishedBytes: Int64
        var started, ended: String?
        var rateBytesPerSecond: Int?
        var rateItemsPerSecond: Double?
        var etaSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case inProgress = "in_progress", total, finished, succeeded, duplicate, quarantined, failed
            case pending, uploading, deriving, waiting
            case remainingBytes = "remaining_bytes", finishedBytes = "finished_bytes", started, ended
            case rateBytesPerSecond = "rate_bytes_per_second", rateItemsPerSecond = "rate_items_per_second"
            case etaSeconds = "eta_seconds"
        }

        init(_ batch: IngestBatch) {
            inProgress = batch.inProgress
            total = batch.total
            finished = batch.finished
            succeeded = batch.succeeded
            duplicate = batch.duplicates
            quarantined = batch.quarantined
            failed = batch.failed
            pending = batch.pending
            uploading = batch.uploading
            deriving = batch.deriving
            waiting = batch.waiting
            remainingBytes = batch.remainingBytes
            finishedBytes = batch.finishedBytes
            started = batch.start.map(JSONOutput.iso)
            ended = batch.end.map(JSONOutput.iso)
            rateBytesPerSecond = batch.rate.map { Int($0) }
            rateItemsPerSecond = batch.itemRate
            etaSeconds = batch.eta.map { Int($0.rounded(.up)) }
        }
    }

    init(_ progress: IngestProgress) {
        staged = progress.staged
        counts = Dictionary(uniqueKeysWithValues: IngestItem.State.allCases.map { ($0, progress.counts[$0]) })
        bytes = Dictionary(uniqueKeysWithValues: IngestItem.State.allCases.map { ($0.rawValue, progress.counts.bytes[$0] ?? 0) })
        batch = Batch(progress.batch)
        rateBytesPerSecond = batch.rateBytesPerSecond
        etaSeconds = batch.etaSeconds
    }

    /// The fixed keys, and one per state name.
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(staged, forKey: Key("staged"))
        for (state, count) in counts { try c.encode(count, forKey: Key(state.rawValue)) }
        try c.encode(bytes, forKey: Key("bytes"))
        try c.encodeIfPresent(rateBytesPerSecond, forKey: Key("rate_bytes_per_second"))
        try c.encodeIfPresent(etaSeconds, forKey: Key("eta_seconds"))
        try c.encode(batch, forKey: Key("batch"))
    }
}

enum JSONOutput {
    /// "2026-01-31T12:00:00Z", as every date in the output.
    static func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    /// Sorted keys, and `/` escaped as `\/`: byte for byte what the JSONSerialization output
    /// these types replaced printed.
    static func encode(_ value: some Encodable, pretty: Bool) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Prints `value` pretty-printed (the file commands' `--json`).
    static func print(_ value: some Encodable) throws {
        Swift.print(try encode(value, pretty: true))
    }
}
