import Foundation

/// The times of one item that place it in a batch (`Catalog.timeline()`): a light row, so
/// `ncfs status --watch` can read every item once a second.
public struct IngestTimes: Sendable, Hashable {
    public var id: Int64
    public var state: IngestItem.State
    public var size: Int64
    public var attempts: Int
    public var createdAt: Date
    public var nextAttemptAt: Date
    public var updatedAt: Date
    public var finishedAt: Date?

    public init(id: Int64, state: IngestItem.State, size: Int64, attempts: Int, createdAt: Date, nextAttemptAt: Date,
                updatedAt: Date, finishedAt: Date?) {
        self.id = id
        self.state = state
        self.size = size
        self.attempts = attempts
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
    }

    public init(_ item: IngestItem) {
        self.init(id: item.id, state: item.state, size: item.size, attempts: item.attempts, createdAt: item.createdAt,
                  nextAttemptAt: item.nextAttemptAt, updatedAt: item.updatedAt, finishedAt: item.finishedAt)
    }

    /// When the item entered the queue: its creation, or the moment it was put back to
    /// pending (`ncfs backfill`, a failed file rewritten), which sets the next attempt to then
    /// with the attempts reset. An item retried after failures keeps its creation time.
    var entered: Date { attempts == 0 ? max(createdAt, nextAttemptAt) : createdAt }

    /// When it left the queue (now while active).
    func left(now: Date) -> Date { state.isActive ? now : max(entered, finishedAt ?? updatedAt) }
}

/// The batch `ncfs status` and `ncfs status --watch` show: the items that entered the queue
/// since it was last idle (nothing pending, uploading, deriving or waiting in incoming/ for
/// more than `idleGap` seconds), plus the files waiting in incoming/ to be taken. Items of
/// earlier batches (an old failure among them) are not part of it.
///
/// A pure function of the items' times, the waiting files and the clock, so it is tested with
/// a driven clock.
public struct IngestBatch: Sendable, Equatable {
    /// When the batch began (the earliest entry among its items; nil: there was none).
    public var start: Date?
    /// When its last item finished (nil while it is in progress).
    public var end: Date?
    /// Something is still pending, being worked on, or waiting in incoming/.
    public var inProgress = false
    public var succeeded = 0
    public var duplicates = 0
    /// Persisted, then found broken by `ncfs quarantine`.
    public var quarantined = 0
    public var failed = 0
    public var pending = 0
    public var uploading = 0
    public var deriving = 0
    /// Files in incoming/ not taken yet (being written, or quiet for less than the ingest delay).
    public var waiting = 0
    /// Bytes of the active items and the waiting files.
    public var remainingBytes: Int64 = 0
    /// Bytes of the batch's finished items.
    public var finishedBytes: Int64 = 0
    /// Bytes and items per second finished in the last `rateWindow` seconds of the batch (nil:
    /// nothing finished in that time, so no rate yet).
    public var rate: Double?
    public var itemRate: Double?
    /// Seconds left at the recent rate (nil without a rate, or with nothing left).
    public var eta: Double?

    /// Items finished: persisted, duplicate, quarantined or failed.
    public var finished: Int { succeeded + duplicates + quarantined + failed }
    public var active: Int { pending + uploading + deriving }
    /// Items in the batch, the waiting files included.
    public var total: Int { finished + active + waiting }

    /// The queue idle this long ends a batch (shorter gaps, such as the ingest delay between
    /// two files of one `cp`, do not).
    public static let idleGap: Double = 5
    /// The rate is measured over this many seconds (or the batch's age, if less).
    public static let rateWindow: Double = 60

    public init() {}

    /// The batch in progress at `now` (or, with nothing in progress, the last one, with
    /// `inProgress` false and no rate), from every item's times and the waiting files.
    public static func compute(_ items: [IngestTimes], waiting: Int, waitingBytes: Int64, now: Date,
                               idleGap: Double = IngestBatch.idleGap, rateWindow: Double = IngestBatch.rateWindow) -> IngestBatch {
        // Each item is in the queue from `entered` to `left`; the waiting files from now on.
        // The batch is the last run of these spans with no gap longer than `idleGap`.
        var spans = items.map { (start: $0.entered, end: $0.left(now: now), item: Optional($0)) }
        if waiting > 0 { spans.append((start: now, end: now, item: nil)) }
        spans.sort { $0.start < $1.start }
        var runStart = 0
        var reach = Date.distantPast
        for (index, span) in spans.enumerated() {
            if index > 0 && span.start.timeIntervalSince(reach) > idleGap { runStart = index }
            reach = max(reach, span.end)
        }
        var batch = IngestBatch()
        guard runStart < spans.count else { return batch }
        let run = spans[runStart...]
        batch.start = run.first?.start
        batch.waiting = waiting
        batch.remainingBytes = waitingBytes
        var lastEnd = Date.distantPast
        for span in run {
            guard let item = span.item else { continue }
            switch item.state {
            case .pending: batch.pending += 1
            case .uploading: batch.uploading += 1
            case .deriving: batch.deriving += 1
            case .succeeded: batch.succeeded += 1
            case .duplicate: batch.duplicates += 1
            case .quarantined: batch.quarantined += 1
            case .failed: batch.failed += 1
            }
            if item.state.isActive {
                batch.remainingBytes += item.size
            } else {
                batch.finishedBytes += item.size
                lastEnd = max(lastEnd, span.end)
            }
        }
        // Waiting files belong to the batch only if it is still going (otherwise they start
        // the next one, which is the run just computed: it holds only them).
        batch.inProgress = batch.active > 0 || waiting > 0
        guard batch.inProgress else {
            batch.waiting = 0
            batch.end = lastEnd == .distantPast ? nil : lastEnd
            return batch
        }
        // The recent rate: what finished in the last `rateWindow` seconds of this batch.
        let windowStart = max(now.addingTimeInterval(-rateWindow), batch.start ?? now)
        let span = max(1, now.timeIntervalSince(windowStart))
        var recentBytes: Int64 = 0
        var recentItems = 0
        for entry in run {
            guard let item = entry.item, !item.state.isActive, entry.end >= windowStart else { continue }
            recentBytes += item.size
            recentItems += 1
        }
        if recentItems > 0 {
            batch.itemRate = Double(recentItems) / span
            batch.rate = Double(recentBytes) / span
            // The slower of the two estimates: a batch of large files is bound by bytes, one of
            // many small ones by items (each is hashed, uploaded and derived on its own).
            let left = Double(batch.active + batch.waiting)
            var seconds = left / batch.itemRate!
            if let rate = batch.rate, rate > 0 { seconds = max(seconds, Double(batch.remainingBytes) / rate) }
            batch.eta = seconds
        }
        return batch
    }
}
