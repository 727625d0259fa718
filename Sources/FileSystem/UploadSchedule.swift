import Foundation

/// The staged files waiting for an uploader, ordered by the time they fall due, and the
/// uploaders' choice of what to take next.
///
/// Every change to what makes a file uploadable (a close, an open for writing, a namespace
/// operation holding it, an fsync asking for it, the end of an upload, a backoff, an unlink, a
/// rename) announces the file again with its new `Readiness`, or nil when it may not be
/// uploaded now. Nothing is removed from the middle of a heap: an announcement gives the file a
/// new stamp, and an entry whose stamp is no longer its file's is dropped when it reaches the
/// top (lazy invalidation). An uploader so looks at the few files that fell due since it last
/// looked, not at every pending file; before this, each wake scanned every staged file under
/// `WriteBack.condition`, which every close, create and rename also waits for.
///
/// A value inside `WriteBack`, guarded by its `condition`; it takes no lock itself and reads
/// the time from the injected clock only.
struct UploadSchedule {
    /// When a file may be uploaded, as its state says now (`StagedFile.readiness`).
    struct Readiness: Equatable {
        var at: Date
        var size: Int64
        /// For a batch's order (by path, so that it spans few folders).
        var path: String
        /// An fsync waits for it: taken at once, never held back to share a batch.
        var urgent: Bool
    }

    /// What `next` tells an uploader.
    enum Decision {
        case take([StagedFile])
        /// Nothing to take now: wait until then (or until woken).
        case sleep(until: Date)
    }

    /// The settings a choice depends on.
    struct Limits {
        var uploaders = 4
        var batchFileLimit: Int64 = 1 << 20
        var bulkFiles = 100
        var bulkBytes: Int64 = 16 << 20
        var putBatchFiles = 8
        var batchLinger: Double = 1
    }

    private struct Entry: Comparable {
        let file: StagedFile
        let stamp: UInt64
        let readiness: Readiness
        let small: Bool

        static func < (a: Entry, b: Entry) -> Bool { (a.readiness.at, a.stamp) < (b.readiness.at, b.stamp) }
        static func == (a: Entry, b: Entry) -> Bool { a.stamp == b.stamp }
    }

    let limits: Limits
    let clock: any TimeSource
    /// Entries not yet due, small files apart (the batch linger asks when the next small one
    /// falls due). May hold stale entries.
    private var smallHeap = MinHeap<Entry>()
    private var largeHeap = MinHeap<Entry>()
    /// Each scheduled file's current entry: in a heap until it falls due, then in `due` until an
    /// uploader takes it.
    private var waiting: [ObjectIdentifier: Entry] = [:]
    private var due: [ObjectIdentifier: Entry] = [:]
    private var dueUrgent = 0
    private var dueLarge = 0
    private var nextStamp: UInt64 = 0
    /// When each sleeping uploader (by number) wakes by itself; absent while it uploads, and
    /// from the announcement that wakes them all until each sleeps again. An announcement wakes
    /// the uploaders only when none of them would wake in time for the file: waking all of them
    /// at every close of a bulk copy cost each a look under `condition` for nothing.
    private var sleepers: [Int: Date] = [:]

    init(limits: Limits, clock: any TimeSource) {
        self.limits = limits
        self.clock = clock
    }

    /// Files scheduled (waiting or due), and entries held in the heaps, stale ones included.
    var scheduledCount: Int { waiting.count + due.count }
    var storedEntries: Int { smallHeap.count + largeHeap.count }

    /// The file's readiness changed: it is due at `readiness.at`, or (nil) not uploadable now.
    /// Returns whether the sleeping uploaders must be woken (the caller broadcasts).
    mutating func announce(_ file: StagedFile, _ readiness: Readiness?) -> Bool {
        forget(ObjectIdentifier(file))
        guard let readiness else { return false }
        nextStamp += 1
        let entry = Entry(file: file, stamp: nextStamp, readiness: readiness, small: readiness.size <= limits.batchFileLimit)
        waiting[ObjectIdentifier(file)] = entry
        if entry.small { smallHeap.insert(entry) } else { largeHeap.insert(entry) }
        compactIfStale()
        guard let earliest = sleepers.values.min(), earliest > readiness.at else { return false }
        // All of them are woken, and each tells its new wake time when it sleeps again.
        sleepers.removeAll()
        return true
    }

    /// Whether `uploaders` uploaders all sleep until a time after `now`, none woken since (for
    /// `WriteBack.waitsForTime`).
    func allSleep(uploaders: Int, after now: Date) -> Bool {
        sleepers.count == uploaders && sleepers.values.allSatisfy { $0 > now }
    }

    /// What uploader `uploader` does now: take files (they leave the schedule; the caller
    /// marks them uploading), or sleep. `busy` uploaders are uploading, so the due files are
    /// shared among the others.
    mutating func next(uploader: Int, bulk: Bool, busy: Int) -> Decision {
        let now = clock.now
        promote(now)
        if due.isEmpty {
            let until = [Self.validMin(&smallHeap, waiting), Self.validMin(&largeHeap, waiting)].compactMap { $0 }.min() ?? .distantFuture
            sleepers[uploader] = until
            return .sleep(until: until)
        }
        // A copy closes its files one after another: taken the moment each is due, they would
        // go a few to a request. While more small files fall due within the linger, the due ones
        // wait for them (each at most `batchLinger` past its due time; never with an fsync
        // waiting, nor once a request would be full).
        if bulk && dueUrgent == 0 && dueLarge == 0 && due.count < limits.bulkFiles,
           let nextSmall = Self.validMin(&smallHeap, waiting), nextSmall <= now.addingTimeInterval(limits.batchLinger) {
            let lingerEnd = due.values.map(\.readiness.at).min()!.addingTimeInterval(limits.batchLinger)
            if now < lingerEnd {
                let until = min(nextSmall, lingerEnd)
                sleepers[uploader] = until
                return .sleep(until: until)
            }
        }
        let batch = chooseBatch(bulk: bulk, busy: busy)
        for file in batch { forget(ObjectIdentifier(file)) }
        sleepers[uploader] = nil
        return .take(batch)
    }

    /// The uploader stops.
    mutating func leave(uploader: Int) {
        sleepers[uploader] = nil
    }

    /// The files to take from those due: the longest waiting one, and if it is small, other
    /// small ones up to the batch limits, ordered by path so that a batch spans few folders.
    /// The due files are shared among the idle uploaders, so that a few batches run at once
    /// rather than one long one.
    private func chooseBatch(bulk: Bool, busy: Int) -> [StagedFile] {
        let first = due.values.min()!
        guard first.small else { return [first.file] }
        let small = due.values.filter(\.small).sorted { $0.readiness.path < $1.readiness.path }
        let idle = max(1, limits.uploaders - busy)
        let share = max(1, min(bulk ? limits.bulkFiles : limits.putBatchFiles, (small.count + idle - 1) / idle))
        var batch = [first.file]
        var bytes = first.readiness.size
        for candidate in small where batch.count < share && candidate.stamp != first.stamp {
            guard bytes + candidate.readiness.size <= limits.bulkBytes else { break }
            batch.append(candidate.file)
            bytes += candidate.readiness.size
        }
        return batch
    }

    /// Moves the entries fallen due by `now` from the heaps to `due`, dropping stale ones.
    private mutating func promote(_ now: Date) {
        for small in [true, false] {
            while let top = small ? smallHeap.min : largeHeap.min, top.readiness.at <= now {
                if small { smallHeap.removeMin() } else { largeHeap.removeMin() }
                let id = ObjectIdentifier(top.file)
                guard waiting[id]?.stamp == top.stamp else { continue }
                waiting[id] = nil
                due[id] = top
                if top.readiness.urgent { dueUrgent += 1 }
                if !top.small { dueLarge += 1 }
            }
        }
    }

    /// The due time of the heap's earliest current entry, dropping stale ones above it.
    private static func validMin(_ heap: inout MinHeap<Entry>, _ waiting: [ObjectIdentifier: Entry]) -> Date? {
        while let top = heap.min {
            if waiting[ObjectIdentifier(top.file)]?.stamp == top.stamp { return top.readiness.at }
            heap.removeMin()
        }
        return nil
    }

    private mutating func forget(_ id: ObjectIdentifier) {
        waiting[id] = nil
        guard let old = due.removeValue(forKey: id) else { return }
        if old.readiness.urgent { dueUrgent -= 1 }
        if !old.small { dueLarge -= 1 }
    }

    /// Stale entries wait in a heap until they reach its top; a file announced again and again
    /// with a far due time (a long backoff, renamed meanwhile) could pile them up. Rebuilt from
    /// the current entries when stale ones outnumber them.
    private mutating func compactIfStale() {
        guard storedEntries > 2 * waiting.count + 64 else { return }
        smallHeap = MinHeap(waiting.values.filter(\.small))
        largeHeap = MinHeap(waiting.values.filter { !$0.small })
    }
}
