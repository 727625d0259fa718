import Foundation
internal import CSQLite

/// One file whose local version still has to reach the server: a row of the upload journal.
public struct PendingUpload: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, CaseIterable {
        /// Waiting for the uploader (also after a failed attempt that will be retried).
        case pending
        /// An attempt is running. Found at start-up, it means the daemon died mid-upload:
        /// `UploadJournal.recoverInterrupted` puts it back to pending.
        case uploading
        /// The uploader gave up (its retry limit, or an error that retrying cannot fix);
        /// `lastError` says why. The bytes stay in the staging file.
        case failed
    }

    /// Never reused (AUTOINCREMENT), so an uploader holding an id cannot act on a row created
    /// after its own was removed.
    public var id: Int64
    /// Relative to the mount root, NFC, no leading slash.
    public var remotePath: String
    /// The local file holding the bytes to upload. The journal records it; the caller owns it.
    public var stagingFile: String
    public var size: Int64
    /// Seconds since 1970, sent as `X-OC-Mtime`.
    public var mtime: Int64
    /// The server's ETag of the version the local one was based on (for `If-Match`); nil when
    /// the file is new on the server (`If-None-Match: *`).
    public var baseETag: String?
    public var state: State
    /// Attempts started since the last change to the file.
    public var attempts: Int
    public var lastError: String?
    /// The chunked upload (Nextcloud chunking v2) to resume, if one was started.
    public var chunkUploadID: String?
    /// Raised by every change that needs a new upload (content, mtime, name). An upload
    /// carries the generation it started with, and only that generation can `complete` it.
    public var generation: Int64
    /// When this path's oldest change not yet on the server was recorded: the upload's age.
    public var createdAt: Date
    public var updatedAt: Date
}

extension PendingUpload {
    init(row: SQLiteRow) throws(SQLiteError) {
        let stateName = try row.string("state")
        guard let state = State(rawValue: stateName) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "unknown upload state \(stateName)", sql: row.sql)
        }
        self.init(
            id: try row.int64("id"),
            remotePath: try row.string("remote_path"),
            stagingFile: try row.string("staging_file"),
            size: try row.int64("size"),
            mtime: try row.int64("mtime"),
            baseETag: row["base_etag"].string,
            state: state,
            attempts: Int(try row.int64("attempts")),
            lastError: row["last_error"].string,
            chunkUploadID: row["chunk_upload_id"].string,
            generation: try row.int64("generation"),
            createdAt: Date(timeIntervalSince1970: try row.double("created_at")),
            updatedAt: Date(timeIntervalSince1970: try row.double("updated_at"))
        )
    }
}
