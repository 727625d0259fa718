import Foundation
import Glibc
@testable import Ingest
import TestSupport
import Testing
import WebDAV

/// Ingest stopped at every step of an item's life, then resumed by a new service on the same
/// state folder and catalog, as a `kill -9` and a restart would leave it.
///
/// The steps are found, not listed by hand: a clean run records every point where the
/// pipeline acts on something that outlives it — each request to the store (stopped before it
/// was sent, or after the server carried it out and before the answer came back: the lost
/// answer), each change of the catalog (before and after its commit), and each word to the
/// mount (a folder made, the staged copy gone). Then one run per point and side stops the
/// worker there: it never comes back from that call, and every later call of the old service
/// fails, so nothing after the stop reaches the store, the catalog or the staging folder. A
/// new `IngestService` starts on the same folders (a new SQLite connection, a new view of the
/// store) and must bring the item to the same end as the clean run:
///
/// - every original and derivative on the store exactly once, byte for byte those of the clean
///   run, and nothing else (no `name (2)` of our own original, no leftovers);
/// - the catalog: one item, `succeeded`, its derivatives recorded with the stored sizes;
///   nothing pending or due;
/// - the staged copy gone from `incoming/` (a succeeded item leaves it) and the work folder
///   tidied;
/// - with share links on: exactly one public link for the original, the one recorded (a stop
///   between the link's creation and the commit recording it made a second one at the
///   restart, until the resumed upload learned to look for it first).
///
/// With bulk uploads on, the steps are: the item taken (catalog add), pending → uploading (the
/// name reserved), the listing of the original folder, each MKCOL and the mount told of it,
/// the bulk request of all five files, the share, the commit of `succeeded`, and the finish
/// (staged copy removed, the mount told, the catalog's staging path cleared). By PUT: the
/// same up to the folders, then the original's PUT and its size check, the share, uploading →
/// deriving, each derivative's PUT and size check, and the same finish.
@Suite("Ingest crash at every step (in process)", .serialized, .timeLimit(.minutes(15)),
       .enabled(if: IngestRig.missing == nil, "\(IngestRig.missing ?? "")"))
struct IngestCrashTests {
    @Test("stopped at every step, before and after it, then restarted: the same files once, intact; catalog succeeded; nothing pending; staged copy gone",
          arguments: [true, false])
    func everyStep(bulk: Bool) throws {
        let bytes = try IngestRig.photo(seed: 40)
        let reference = try CrashRun(bulk: bulk, bytes: bytes, stopAt: nil)
        let points = reference.switchboard.trace
        try #require(reference.items.count == 1 && reference.items[0].state == .succeeded, "the clean run: \(reference.items)")
        // The clean run's files are the photo and what ncfs-derive makes of it on its own.
        #expect(reference.files == (try IngestMemoryTests.expectedFiles(reference.rig, name: reference.name, bytes: bytes,
                                                                       day: reference.items[0].day ?? "?")))
        try #require(points.count >= 10, "the clean run recorded its steps: \(points)")
        print("ingest crash points (bulk \(bulk ? "on" : "off")), \(points.count) steps × before/after:\n"
              + points.enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n"))
        var failures: [String] = []
        var runs = 0
        for index in points.indices {
            for side in [Switchboard.Side.before, .after] where side == .before || points[index].hasAfter {
                let point = Switchboard.Point(index: index, side: side)
                let run = try CrashRun(bulk: bulk, bytes: bytes, stopAt: point)
                runs += 1
                let problems = run.problems(against: reference)
                if !problems.isEmpty {
                    failures.append("stopped \(side) step \(index) (\(points[index].label)):\n    " + problems.joined(separator: "\n    ")
                                    + "\n  log:\n" + run.logTail)
                }
            }
        }
        print("ingest crash points (bulk \(bulk ? "on" : "off")): \(runs) stops, \(failures.count) failed")
        #expect(failures.isEmpty, "\(failures.count) crash point(s) failed:\n\(failures.joined(separator: "\n"))")
    }
}

/// Counts the steps of one run and stops it at one of them. Thread-safe: the scheduler and
/// the workers pass through it.
final class Switchboard: @unchecked Sendable {
    // @unchecked: the mutable fields are guarded by `lock`.
    enum Side: String, Sendable { case before, after }

    struct Point: Sendable, CustomStringConvertible {
        var index: Int
        var side: Side
        var description: String { "\(side) step \(index)" }
    }

    struct Step: Sendable, CustomStringConvertible {
        var label: String
        /// Whether the step has an "after" (a request or a commit; a word to the mount has not).
        var hasAfter: Bool
        var description: String { label }
    }

    /// What every call of the old service meets once it was stopped.
    struct Stopped: Error, CustomStringConvertible {
        var description: String { "the process was stopped here" }
    }

    private let lock = NSLock()
    private var steps: [Step] = []
    /// The step each thread is in (between its before and its after).
    private var current: [pthread_t: Int] = [:]
    private let target: Point?
    private var stopped = false
    /// Signalled when the target was reached.
    let reached = DispatchSemaphore(value: 0)
    /// Never signalled: the stopped thread waits on it for good.
    private let hold = DispatchSemaphore(value: 0)

    init(stopAt target: Point?) { self.target = target }

    var trace: [Step] { lock.withLock { steps } }
    var hasStopped: Bool { lock.withLock { stopped } }

    /// A step begins. Returns to go on; throws once the run was stopped; never returns for the
    /// thread that reaches the target.
    func before(_ label: String, hasAfter: Bool = true) throws {
        let hit: Bool = try lock.withLock {
            if stopped { throw Stopped() }
            steps.append(Step(label: label, hasAfter: hasAfter))
            let index = steps.count - 1
            current[pthread_self()] = index
            let hit = target.map { $0.index == index && $0.side == .before } ?? false
            if hit { stopped = true }
            return hit
        }
        if hit { stopHere() }
    }

    /// The step this thread began was carried out.
    func after() throws {
        let hit: Bool = try lock.withLock {
            if stopped { throw Stopped() }
            guard let index = current.removeValue(forKey: pthread_self()) else { return false }
            let hit = target.map { $0.index == index && $0.side == .after } ?? false
            if hit { stopped = true }
            return hit
        }
        if hit { stopHere() }
    }

    /// A read: goes on unless the run was stopped.
    func read() throws {
        if hasStopped { throw Stopped() }
    }

    /// The stopped thread stays here for the rest of the test process, holding whatever it
    /// held, like a process that is gone: nothing after this point of its work ever runs.
    private func stopHere() -> Never {
        reached.signal()
        while true { hold.wait() }
    }
}

/// The catalog as the old service sees it: every change is a step of the switchboard.
final class SwitchedCatalog: Catalog, @unchecked Sendable {
    // @unchecked: both fields are immutable; SQLiteCatalog is thread-safe.
    let inner: SQLiteCatalog
    let switchboard: Switchboard
    init(_ inner: SQLiteCatalog, _ switchboard: Switchboard) {
        self.inner = inner
        self.switchboard = switchboard
    }

    private func change<T>(_ label: String, _ body: () throws -> T) throws -> T {
        try switchboard.before("catalog: " + label)
        let value = try body()
        try switchboard.after()
        return value
    }

    func add(name: String, stagingPath: String, bucket: String, size: Int64, sourceMtime: Int64, now: Date) throws -> IngestItem {
        try change("add \(name) (pending)") {
            try inner.add(name: name, stagingPath: stagingPath, bucket: bucket, size: size, sourceMtime: sourceMtime, now: now)
        }
    }
    func update(_ item: IngestItem) throws {
        let label = "update → \(item.state)" + (item.stagingPath == nil ? ", staged copy gone" : "")
            + (item.originalPath.map { " (\(PathBytes.lastComponent($0)))" } ?? "")
        try change(label) { try inner.update(item) }
    }
    func remove(_ id: Int64) throws { try change("remove \(id)") { try inner.remove(id) } }
    func reschedule(limit: Int, now: Date) throws -> [IngestItem] { try change("reschedule") { try inner.reschedule(limit: limit, now: now) } }
    func reschedule(ids: [Int64], now: Date) throws -> [IngestItem] { try change("reschedule") { try inner.reschedule(ids: ids, now: now) } }
    func dismiss(ids: [Int64]) throws -> [IngestItem] { try change("dismiss") { try inner.dismiss(ids: ids) } }

    func item(_ id: Int64) throws -> IngestItem? { try switchboard.read(); return try inner.item(id) }
    func inIncoming(stagingPath: String) throws -> IngestItem? { try switchboard.read(); return try inner.inIncoming(stagingPath: stagingPath) }
    func allInIncoming() throws -> [IngestItem] { try switchboard.read(); return try inner.allInIncoming() }
    func due(now: Date, limit: Int, excluding: Set<Int64>) throws -> [IngestItem] {
        try switchboard.read()
        return try inner.due(now: now, limit: limit, excluding: excluding)
    }
    func nextDue() throws -> Date? { try switchboard.read(); return try inner.nextDue() }
    func holder(sha256: String, excluding: Int64) throws -> IngestItem? {
        try switchboard.read()
        return try inner.holder(sha256: sha256, excluding: excluding)
    }
    func holders(sha256: String, bucket: String, excluding: Int64) throws -> [IngestItem] {
        try switchboard.read()
        return try inner.holders(sha256: sha256, bucket: bucket, excluding: excluding)
    }
    func reservedNames(in folder: String, excluding: Int64) throws -> [String] {
        try switchboard.read()
        return try inner.reservedNames(in: folder, excluding: excluding)
    }
    func items(states: Set<IngestItem.State>, limit: Int?) throws -> [IngestItem] {
        try switchboard.read()
        return try inner.items(states: states, limit: limit)
    }
    func finishedWithStagedFile() throws -> [IngestItem] { try switchboard.read(); return try inner.finishedWithStagedFile() }
    func counts(now: Date, rateWindow: Double) throws -> IngestCounts {
        try switchboard.read()
        return try inner.counts(now: now, rateWindow: rateWindow)
    }
    func timeline() throws -> [IngestTimes] { try switchboard.read(); return try inner.timeline() }
    static var dismissableStates: Set<IngestItem.State> { SQLiteCatalog.dismissableStates }
}

/// One photo ingested, stopped at `stopAt` (nil: not at all) and finished by a second
/// service; what it left.
final class CrashRun {
    let rig: IngestRig
    let switchboard: Switchboard
    let name = "IMG_0040.jpg"
    let point: Switchboard.Point?
    /// The catalog's items at the end.
    private(set) var items: [IngestItem] = []
    private(set) var files: [String: [UInt8]] = [:]
    private(set) var shares: [String: String?] = [:]
    private(set) var stagedLeft = true
    private(set) var workLeft: [String] = []
    private(set) var due: Date?
    private(set) var errors: [String] = []

    var logTail: String { rig.log.tail }
    /// Public links of the item's original.
    var links: Int { shares.values.filter { $0 != nil && $0 == items.first?.originalPath }.count }

    init(bulk: Bool, bytes: [UInt8], stopAt point: Switchboard.Point?) throws {
        self.point = point
        rig = try IngestRig(bulk: bulk, shareLinks: true)
        switchboard = Switchboard(stopAt: point)
        try rig.drop(name, bytes)

        // The first run, every step through the switchboard.
        let switchboard = self.switchboard
        let oldStore = rig.store.view("stopped")
        oldStore.intercept { operation, path, phase in
            switch phase {
            case .before: try switchboard.before("store: \(operation) \(path)")
            case .performed: try switchboard.after()
            }
        }
        let oldCatalog = SwitchedCatalog(try SQLiteCatalog(path: rig.catalogPath), switchboard)
        let first = try rig.service(store: oldStore, catalog: oldCatalog) { folders, left in
            // What the mount is told has no effect here; a stop while telling it is one more point.
            let label = left.map { "mount told: incoming/\($0) left" } ?? "mount told: relist \(folders.sorted().joined(separator: ", "))"
            try? switchboard.before(label, hasAfter: false)
        }
        first.start()

        if point == nil {
            items = try rig.settle(first, oldCatalog, count: 1)
        } else {
            guard switchboard.reached.wait(timeout: .now() + 60) == .success else {
                _ = first.stop(timeout: 5)
                throw RigError("the run never reached \(point!) (\(switchboard.trace.count) steps)\n\(rig.log.tail)")
            }
            // The old service is dead from here: its scheduler stops, its worker never returns.
            _ = first.stop(timeout: 0)
            rig.log.append("---- stopped at \(point!); restarting ----")
            let catalog = try SQLiteCatalog(path: rig.catalogPath)
            let second = try rig.service(store: rig.store.view("restarted"), catalog: catalog)
            second.start()
            items = try rig.settle(second, catalog, count: 1)
            due = try catalog.nextDue()
        }
        files = rig.uploaded()
        shares = rig.store.allShares()
        stagedLeft = rig.staged(name)
        workLeft = (try? FileManager.default.contentsOfDirectory(atPath: rig.workDirectory.path)) ?? []
    }

    /// How this run's end differs from the clean run's (empty: it does not).
    func problems(against reference: CrashRun) -> [String] {
        var problems: [String] = []
        guard items.count == 1, let item = items.first, let referenceItem = reference.items.first else {
            return ["\(items.count) items in the catalog: \(items.map { "\($0.name) \($0.state)" })"]
        }
        if item.state != .succeeded { problems.append("item \(item.state): \(item.persistError ?? "")") }
        // Every rig's clock starts at the same moment (`IngestRig.clockStart`): the same day
        // folder as the clean run's.
        if item.day != referenceItem.day { problems.append("day \(item.day ?? "nil"), the clean run's \(referenceItem.day ?? "nil")") }
        let expected = reference.files
        let missing = Set(expected.keys).subtracting(files.keys), extra = Set(files.keys).subtracting(expected.keys)
        if !missing.isEmpty { problems.append("missing on the server: \(missing.sorted())") }
        if !extra.isEmpty { problems.append("extra on the server: \(extra.sorted())") }
        for (path, content) in expected where files[path] != nil && files[path] != content {
            problems.append("\(path) differs from the clean run's (\(files[path]!.count) bytes, expected \(content.count))")
        }
        if item.originalPath != referenceItem.originalPath {
            problems.append("original at \(item.originalPath ?? "nil")")
        }
        if item.derivatives.count != referenceItem.derivatives.count { problems.append("\(item.derivatives.count) derivatives recorded") }
        for derivative in item.derivatives where files[derivative.path]?.count != Int(derivative.bytes) {
            problems.append("derivative \(derivative.path) recorded with \(derivative.bytes) bytes, stored \(files[derivative.path]?.count ?? -1)")
        }
        if item.stagingPath != nil { problems.append("the catalog still names the staged copy") }
        if stagedLeft { problems.append("the staged copy is still in incoming/") }
        if !workLeft.isEmpty { problems.append("work folder left: \(workLeft)") }
        if let due { problems.append("something still due at \(due)") }
        let original = item.originalPath ?? ""
        let linked = links
        let recorded = shares.filter { $0.value == original }.map { "https://memory.invalid/index.php/s/" + $0.key }
        if item.shareURL == nil || !recorded.contains(item.shareURL!) {
            problems.append("the recorded link \(item.shareURL ?? "nil") is not one of the original's (\(linked) on the server)")
        }
        if linked > 1 { problems.append("\(linked) public links of the original") }
        if shares.values.contains(where: { $0 != original }) { problems.append("a link to something else: \(shares)") }
        return problems
    }
}
