import Foundation

/// Where ingest items live. The pipeline, `ncfs status`, `ncfs items`, `ncfs backfill` and
/// `ncfs quarantine` use only this interface, so a shared database (PostgreSQL, serving
/// several machines) can replace the embedded SQLite file without touching them.
///
/// Every method that changes something is one committed transaction: when it returns the
/// change survives a crash. The pipeline commits each state change before acting on it.
public protocol Catalog: Sendable {
    /// Inserts a new `pending` item for the staged file at `stagingPath`. Fails with
    /// `CatalogError.conflict` if an item in `incoming/` already has that staging path.
    func add(name: String, stagingPath: String, bucket: String, size: Int64, sourceMtime: Int64, now: Date) throws -> IngestItem

    func item(_ id: Int64) throws -> IngestItem?

    /// The item still shown in `incoming/` (active or failed) whose staged file is `stagingPath`.
    func inIncoming(stagingPath: String) throws -> IngestItem?

    /// Every item still shown in `incoming/`.
    func allInIncoming() throws -> [IngestItem]

    /// Active items whose next attempt is due, oldest first, without the ids in `excluding`.
    func due(now: Date, limit: Int, excluding: Set<Int64>) throws -> [IngestItem]

    /// The earliest next attempt of an active item (nil: nothing active).
    func nextDue() throws -> Date?

    /// Writes every field of `item` (matched by id). Fails with `CatalogError.conflict` if its
    /// `originalPath` is already another item's.
    func update(_ item: IngestItem) throws

    /// Removes an item that never reached the server (its staged file was deleted or replaced
    /// before its upload started).
    func remove(_ id: Int64) throws

    /// The earliest item other than `excluding` with this content that owns (or is making)
    /// an original on the server: the one a new copy is a duplicate of.
    func holder(sha256: String, excluding: Int64) throws -> IngestItem?

    /// Every item other than `excluding` with this content under the upload prefix `bucket`
    /// that owns (or is making) an original on the server, oldest first: the candidates a new
    /// copy may be a duplicate of, once one of them is known to still be on the server.
    func holders(sha256: String, bucket: String, excluding: Int64) throws -> [IngestItem]

    /// The file names other items than `excluding` reserved in the folder `folder`.
    func reservedNames(in folder: String, excluding: Int64) throws -> [String]

    /// Items in `states` (all when empty), newest first.
    func items(states: Set<IngestItem.State>, limit: Int?) throws -> [IngestItem]

    /// Final items whose staged file has not been removed yet (a crash came between the final
    /// commit and the removal).
    func finishedWithStagedFile() throws -> [IngestItem]

    func counts(now: Date, rateWindow: Double) throws -> IngestCounts

    /// Every item's state, size and times (for `IngestBatch`), in no particular order.
    func timeline() throws -> [IngestTimes]

    /// Puts up to `limit` failed items back to `pending` with their attempts reset; returns them.
    func reschedule(limit: Int, now: Date) throws -> [IngestItem]

    /// Puts the items `ids` that are still `failed` back to `pending` with their attempts
    /// reset; returns them (an id no longer failed is left as it is).
    func reschedule(ids: [Int64], now: Date) throws -> [IngestItem]

    /// The states `dismiss` removes: final, and not the record of a file on the server.
    static var dismissableStates: Set<IngestItem.State> { get }

    /// Removes the items `ids` that are in a dismissable state (`failed`, `duplicate`,
    /// `quarantined`), dropping later duplicates' references to them; returns those removed.
    /// An id in another state (changed meanwhile) is left as it is.
    func dismiss(ids: [Int64]) throws -> [IngestItem]
}

public enum CatalogError: Error, CustomStringConvertible, Sendable {
    /// A uniqueness rule refused the change (a staging path or an original path in use).
    case conflict(String)
    /// The storage itself failed (I/O, corruption, a schema this build does not know).
    case storage(String)

    public var description: String {
        switch self {
        case .conflict(let text): "catalog conflict: \(text)"
        case .storage(let text): "catalog: \(text)"
        }
    }
}
