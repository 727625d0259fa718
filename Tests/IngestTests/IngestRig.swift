import DerivationFormat
import FileSystemInterface
import Foundation
@testable import Ingest
import Logging
import TestSupport
import WebDAV

/// One in-process ingest setup: a temporary state folder (catalog, work folder), a staging
/// folder standing for `incoming/`, an in-memory server, and the real `ncfs-derive` (libvips)
/// from the build folder. No FUSE, no socket, no Python.
final class IngestRig: @unchecked Sendable {
    // @unchecked: every field is immutable after init except `settings`, which tests set
    // before they make a service, from one thread.

    let root: URL
    let staging: URL
    let state: URL
    let store: MemoryStore
    let log = LogCollector()
    var settings: IngestService.Settings

    var catalogPath: String { state.appendingPathComponent("catalog.sqlite").path }
    var workDirectory: URL { settings.workDirectory }

    static var deriveTool: URL { TestServer.buildDirectory.appendingPathComponent("ncfs-derive") }
    static let vips = "/usr/bin/vips"

    /// Why these tests cannot run here (nil: they can).
    static var missing: String? {
        if !FileManager.default.isExecutableFile(atPath: deriveTool.path) { return "no \(deriveTool.path) (swift build first)" }
        if !FileManager.default.isExecutableFile(atPath: vips) { return "no \(vips) to make test photos (apt install libvips-tools)" }
        return nil
    }

    init(bulk: Bool = true, chunking: Bool = true, shareLinks: Bool = false) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-ingest-rig-\(UUID().uuidString.prefix(8))")
        staging = root.appendingPathComponent("incoming")
        state = root.appendingPathComponent("state")
        for folder in [staging, state] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        store = MemoryStore(bulk: bulk, chunking: chunking)
        settings = IngestService.Settings(deriveTool: Self.deriveTool, workDirectory: state.appendingPathComponent("ingest-work"))
        settings.timeZone = TimeZone(identifier: "UTC")!
        settings.quietDelay = 0
        settings.workers = 2
        settings.deriveWorkers = 2
        // Retries a few tens of milliseconds apart: a fault costs the test no wall-clock time.
        settings.retryBase = 0.02
        settings.retryCap = 0.1
        settings.bulkUpload = bulk
        settings.shareLinks = shareLinks
        // Real time from a fixed noon: retries and the scheduler's sleeps pass by themselves,
        // and the day of the date path is known (`today`) and cannot change during a test.
        settings.clock = ShiftedClock(start: Self.clockStart)
    }

    /// Where every rig's clock starts: noon UTC (the rig's time zone), twelve hours from
    /// either midnight.
    static let clockStart = date(2030, 6, 15, 12, 0, 0, in: TimeZone(identifier: "UTC")!)

    /// The moment a clock in `zone` shows as this date and time.
    static func date(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int, in zone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second))!
    }

    /// The day folder (`YYYY/MM_DD`) of the rig's clock now.
    var today: String { IngestService.dayPath(settings.clock.now, in: settings.timeZone) }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// A service on this rig's folders, talking to `store` (a view of the rig's store by
    /// default) and writing to `catalog`; `onFinished` sees what the mount would be told.
    func service(store: (any IngestStore)? = nil, catalog: any Catalog,
                 onFinished: @escaping @Sendable ([String], String?) -> Void = { _, _ in }) throws -> IngestService {
        try IngestService(settings: settings, catalog: catalog, folder: StagingFolder(root: staging), store: store ?? self.store,
                          logger: log.logger, onFinished: onFinished)
    }

    /// Writes a file into the staging folder, as a close in `incoming/` leaves it.
    func drop(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: staging.appendingPathComponent(name))
    }

    /// Whether the staging folder still holds `name`.
    func staged(_ name: String) -> Bool { FileManager.default.fileExists(atPath: staging.appendingPathComponent(name).path) }

    /// Opens the catalog, starts a service on it, and waits until `count` items are done
    /// (`settle`).
    func ingest(count: Int) throws -> [IngestItem] {
        let catalog = try SQLiteCatalog(path: catalogPath)
        let service = try service(catalog: catalog)
        service.start()
        return try settle(service, catalog, count: count)
    }

    /// Waits until `count` items are in the catalog, all in a final state and (unless failed)
    /// out of the staging folder, then stops `service` (which lets a worker finish what it
    /// holds). Returns the items, oldest first.
    @discardableResult
    func settle(_ service: IngestService, _ catalog: any Catalog, count: Int, timeout: Double = 60) throws -> [IngestItem] {
        let deadline = Date().addingTimeInterval(timeout)
        var items: [IngestItem] = []
        while Date() < deadline {
            items = try catalog.items(states: [], limit: nil).sorted { $0.id < $1.id }
            let done = items.count >= count && items.allSatisfy { !$0.state.isActive && ($0.state == .failed || $0.stagingPath == nil) }
            if done {
                let left = service.stop(timeout: 30)
                guard left == 0 else { throw RigError("\(left) item(s) still in flight after the catalog showed them done") }
                return try catalog.items(states: [], limit: nil).sorted { $0.id < $1.id }
            }
            usleep(20_000)
        }
        _ = service.stop(timeout: 5)
        throw RigError("not settled in \(timeout) s: \(items.map { "\($0.id) \($0.name) \($0.state) \($0.persistError ?? "")" })\n\(log.tail)")
    }

    /// The original's path for `name` on `day`.
    func originalPath(_ name: String, day: String) -> String { settings.prefix + "/" + day + "/original/" + name }

    /// The store's files below the upload prefix.
    func uploaded() -> [String: [UInt8]] {
        store.tree().files.filter { $0.key.hasPrefix(settings.prefix + "/") }
    }

    // MARK: Photos

    /// A greyscale noise JPEG (or PNG, by the name's extension) of 1300 × 900 pixels, the same
    /// bytes for the same seed: wide enough for every derivative size, small enough (~130 kB
    /// as JPEG) to derive in a third of a second.
    static func photo(seed: Int, format: String = "jpg") throws -> [UInt8] {
        try PhotoCache.shared.photo(seed: seed, format: format)
    }

    /// What `ncfs-derive` makes of `bytes` for `stem`: relative path → bytes, run here on its
    /// own, so the files on the store are compared with an independent derivation.
    static func derivatives(of bytes: [UInt8], name: String, stem: String) throws -> [String: [UInt8]] {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-ingest-derive-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent(name)
        try Data(bytes).write(to: source)
        let out = folder.appendingPathComponent("out")
        let (status, output) = try runTool(deriveTool.path, ["--source", source.path, "--stem", stem, "--out", out.path, "--preview-edge", "2048"])
        guard status == 0 else { throw RigError("ncfs-derive failed (\(status)): \(output)") }
        let result = try JSONDecoder().decode(DerivationResult.self, from: Data(output.utf8))
        var files: [String: [UInt8]] = [:]
        for derivative in result.derivatives {
            files[derivative.relativePath] = Array(try Data(contentsOf: out.appendingPathComponent(derivative.relativePath)))
        }
        return files
    }
}

/// Photos made once per test process (the `vips` command line tool), by seed and format.
final class PhotoCache: @unchecked Sendable {
    // @unchecked: `made` is guarded by `lock`.
    static let shared = PhotoCache()
    private let lock = NSLock()
    private var made: [String: [UInt8]] = [:]

    func photo(seed: Int, format: String) throws -> [UInt8] {
        let key = "\(seed).\(format)"
        return try lock.withLock {
            if let bytes = made[key] { return bytes }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-ingest-photo-\(getpid())-\(key)")
            defer { try? FileManager.default.removeItem(at: file) }
            let (status, output) = try runTool(IngestRig.vips, ["gaussnoise", file.path, "1300", "900", "--seed", String(seed), "--sigma", "6"])
            guard status == 0 else { throw RigError("vips gaussnoise failed (\(status)): \(output)") }
            let bytes = Array(try Data(contentsOf: file))
            made[key] = bytes
            return bytes
        }
    }
}

/// `incoming/` as the pipeline sees it, without the file system: a local folder nobody has
/// open for writing.
final class StagingFolder: IncomingStaging, @unchecked Sendable {
    // @unchecked: `observer` is set once, by `IngestService.start`, before anything reads it.
    let root: URL
    var observer: (any IncomingObserver)?
    init(root: URL) { self.root = root }
    func localPath(_ relative: String) -> String { relative.isEmpty ? root.path : root.appendingPathComponent(relative).path }
    func isOpenForWriting(_ path: String) -> Bool { false }
}

struct RigError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a program to its end; its standard output and error, together.
func runTool(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The service's log, kept in memory: a failing test shows its tail.
final class LogCollector: @unchecked Sendable {
    // @unchecked: `lines` is guarded by `lock`.
    private let lock = NSLock()
    private var lines: [String] = []

    var logger: Logger {
        var logger = Logger(label: "ingest-test") { _ in Handler(collector: self) }
        logger.logLevel = .debug
        return logger
    }

    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
    var tail: String { lock.withLock { lines.suffix(40).joined(separator: "\n") } }

    struct Handler: LogHandler {
        let collector: LogCollector
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            collector.append("\(event.level): \(event.message)")
        }
    }
}
