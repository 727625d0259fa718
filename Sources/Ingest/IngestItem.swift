import Foundation

/// One file dropped into `incoming/`, from the moment it was taken until it is persisted (or
/// failed): the fields of pindeck's image record plus what the pipeline needs to resume.
public struct IngestItem: Sendable, Hashable, Codable {
    /// `pending → uploading → deriving → succeeded`, or `failed` (with `persistError`).
    /// `duplicate` (identical content ingested before: nothing uploaded) and `quarantined`
    /// (`ncfs quarantine` found its files broken on the server) are final as well.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        case pending, uploading, deriving, succeeded, failed, duplicate, quarantined

        /// States the pipeline still works on.
        public var isActive: Bool { self == .pending || self == .uploading || self == .deriving }
        /// States in which the item is still shown in `incoming/` (its staged file is kept).
        public var isInIncoming: Bool { isActive || self == .failed }
    }

    public var id: Int64
    /// The name as dropped (the last component of `stagingPath`).
    public var name: String
    /// Where the staged file is, relative to the incoming folder; nil once it was removed
    /// (the item left `incoming/`).
    public var stagingPath: String?
    public var state: State
    public var sourceType = "upload"
    public var storageProvider = "nextcloud"
    /// The upload prefix (pindeck's bucket/prefix).
    public var bucket: String
    /// `YYYY/MM_DD`, fixed when the item first needs it, so a retry after midnight keeps it.
    public var day: String?
    /// The original's path on the server, relative to the mount root; set (and reserved)
    /// before the upload starts, so a retry never writes a second copy elsewhere.
    public var originalPath: String?
    public var originalURL: String?
    /// Per-file public link (OCS share), when asked for.
    public var shareURL: String?
    public var derivatives: [StoredDerivative] = []
    public var size: Int64
    public var sha256: String?
    public var width: Int?
    public var height: Int?
    public var format: String?
    public var sourceMtime: Int64
    /// EXIF capture time as written by the camera ("YYYY-MM-DDTHH:MM:SS", no zone).
    public var captureDate: String?
    public var palette: [String] = []
    public var attempts = 0
    public var nextAttemptAt: Date
    public var persistError: String?
    /// Why no derivatives exist although the file is an image (corrupt, truncated), or why it
    /// is not an image.
    public var derivativeError: String?
    public var isImage: Bool?
    public var duplicateOf: Int64?
    public var quarantineReason: String?
    public var createdAt: Date
    public var updatedAt: Date
    public var finishedAt: Date?

    public init(id: Int64, name: String, stagingPath: String?, state: State, bucket: String, size: Int64,
                sourceMtime: Int64, now: Date) {
        self.id = id
        self.name = name
        self.stagingPath = stagingPath
        self.state = state
        self.bucket = bucket
        self.size = size
        self.sourceMtime = sourceMtime
        self.nextAttemptAt = now
        self.createdAt = now
        self.updatedAt = now
    }
}

/// A derivative as stored on the server.
public struct StoredDerivative: Sendable, Hashable, Codable {
    /// "preview", "w320", "w768", "w1280".
    public var kind: String
    public var path: String
    public var url: String?
    public var width: Int
    public var height: Int
    public var bytes: Int64
    public var mimeType: String

    public init(kind: String, path: String, url: String?, width: Int, height: Int, bytes: Int64, mimeType: String) {
        self.kind = kind
        self.path = path
        self.url = url
        self.width = width
        self.height = height
        self.bytes = bytes
        self.mimeType = mimeType
    }
}

/// Totals by state, for `ncfs status`.
public struct IngestCounts: Sendable, Hashable {
    public var count: [IngestItem.State: Int] = [:]
    public var bytes: [IngestItem.State: Int64] = [:]
    /// Bytes of items that reached a final state in the last `rateWindow` seconds, and the
    /// window actually covered (for a rate).
    public var recentBytes: Int64 = 0
    public var recentSeconds: Double = 0
    public init() {}

    public subscript(_ state: IngestItem.State) -> Int { count[state] ?? 0 }
}
