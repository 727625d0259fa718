import ArgumentParser
import FileSystem
import Foundation
import Ingest
import WebDAV

/// Finds a mount's state folder (journal, catalog, staged files) the way `ncfs mount` does:
/// --state-dir, else the default folder for the configured URL and login.
struct StateLocation: ParsableArguments {
    @Option(name: .long, help: "WebDAV URL (env NEXTCLOUD_WEBDAV_BASE_URL).")
    var url: String?

    @Option(name: .long, help: "Login name (env NEXTCLOUD_WEBDAV_USER).")
    var user: String?

    @Option(name: .long, help: "Config file of NAME=value lines (default: $XDG_CONFIG_HOME/ncfs/ncfs.conf).")
    var config: String?

    @Option(name: .long, help: "The mount's state folder (as given to `ncfs mount --state-dir`).")
    var stateDir: String?

    func folder() throws -> URL {
        try Self.folder(url: url, user: user, config: config, stateDir: stateDir)
    }

    static func folder(url: String?, user: String?, config: String?, stateDir: String?) throws -> URL {
        if let stateDir { return URL(fileURLWithPath: stateDir) }
        let sources: SettingSources
        do {
            sources = try SettingSources(config: config, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw fail(error)
        }
        guard let url = sources.value(url, "NEXTCLOUD_WEBDAV_BASE_URL") else {
            throw CLIError(message: "no WebDAV URL configured: pass --url (or --state-dir), as for `ncfs mount`", code: 3)
        }
        return Mount.defaultFolder(.state, baseURL: url, user: sources.value(user, "NEXTCLOUD_WEBDAV_USER"))
    }
}

/// Runs a command's body, turning its failures (a `CLIError` with its exit status, anything
/// else with `explain`'s) into a message on stderr and an exit status, as `RemoteCommand` does.
func reportingFailures(_ body: () throws -> Void) throws {
    do { try body() } catch let error as ExitCode { throw error } catch { throw fail(error) }
}

/// The catalog's totals, the batch in progress and the staged files not taken yet, for
/// `ncfs status`.
struct IngestProgress {
    var counts = IngestCounts()
    /// Files in incoming/ the pipeline has not taken yet (still being written, or quiet for
    /// less than the ingest delay, or left by a crash before they were taken).
    var staged = 0
    var stagedBytes: Int64 = 0
    /// The batch in progress (or the last one), see `IngestBatch`.
    var batch = IngestBatch()

    static func catalogPath(_ folder: URL) -> String { folder.appendingPathComponent("catalog.sqlite").path }
    static func stagingFolder(_ folder: URL) -> URL { folder.appendingPathComponent("incoming") }

    static func read(folder: URL, now: Date = Date()) throws -> IngestProgress {
        var progress = IngestProgress()
        let path = catalogPath(folder)
        var inIncoming: Set<String> = []
        var times: [IngestTimes] = []
        if FileManager.default.fileExists(atPath: path) {
            do {
                let catalog = try SQLiteCatalog(readOnlyPath: path)
                progress.counts = try catalog.counts(now: now, rateWindow: IngestBatch.rateWindow)
                // A finished item's file is still in incoming/ for a moment (its state commits
                // before the file goes): held by it, not waiting to be taken.
                inIncoming = Set(try (catalog.allInIncoming() + catalog.finishedWithStagedFile()).compactMap(\.stagingPath))
                times = try catalog.timeline()
            } catch {
                throw CLIError(message: "cannot read the catalog \(path): \(error)", code: 1)
            }
        }
        let staging = stagingFolder(folder)
        for relative in IngestService.untakenFiles(in: staging, taken: inIncoming) {
            var st = stat()
            guard lstat(staging.appendingPathComponent(relative).path, &st) == 0 else { continue }
            progress.staged += 1
            progress.stagedBytes += Int64(st.st_size)
        }
        progress.batch = IngestBatch.compute(times, waiting: progress.staged, waitingBytes: progress.stagedBytes, now: now)
        return progress
    }

    var active: Int { counts[.pending] + counts[.uploading] + counts[.deriving] }
    var done: Int { counts[.succeeded] + counts[.duplicate] }

    func printSummary() {
        let total = counts.count.values.reduce(0, +) + staged
        guard total > 0 else { return }
        var line = "ingest: \(done) done (\(counts[.succeeded]) persisted, \(counts[.duplicate]) duplicates)"
        line += ", \(active) in progress (\(counts[.pending]) pending, \(counts[.uploading]) uploading, \(counts[.deriving]) deriving)"
        if staged > 0 { line += ", \(staged) waiting in incoming/" }
        if counts[.failed] > 0 { line += ", \(counts[.failed]) failed (ncfs items --status failed; ncfs dismiss --state failed)" }
        if counts[.quarantined] > 0 { line += ", \(counts[.quarantined]) quarantined" }
        print(line)
        if batch.inProgress {
            print("        this batch: " + Self.batchLine(batch))
        }
    }

    /// "3/5 done, 1 failed, 1 uploading, 12M to go at 1.2M/s, about 10s left".
    static func batchLine(_ batch: IngestBatch) -> String {
        var parts = ["\(batch.finished)/\(batch.total) done"]
        if batch.failed > 0 { parts.append("\(batch.failed) failed") }
        if batch.pending > 0 { parts.append("\(batch.pending) pending") }
        if batch.uploading > 0 { parts.append("\(batch.uploading) uploading") }
        if batch.deriving > 0 { parts.append("\(batch.deriving) deriving") }
        if batch.waiting > 0 { parts.append("\(batch.waiting) waiting") }
        var line = parts.joined(separator: ", ")
        if batch.remainingBytes > 0 { line += ", \(Format.size(batch.remainingBytes, human: true)) to go" }
        if let rate = batch.rate {
            line += " at \(Format.size(Int64(rate), human: true))/s"
            if let items = batch.itemRate { line += String(format: " (%.1f items/s)", items) }
        }
        if let eta = batch.eta { line += ", about \(Status.age(Int(eta.rounded(.up)))) left" }
        else { line += ", no estimate yet" }
        return line
    }

    /// "5 items in 14s: 4 persisted, 1 duplicate".
    static func finishedLine(_ batch: IngestBatch) -> String {
        var line = "\(batch.finished) item(s)"
        if let start = batch.start, let end = batch.end { line += " in \(Status.age(max(0, Int(end.timeIntervalSince(start).rounded()))))" }
        var parts = ["\(batch.succeeded) persisted"]
        if batch.duplicates > 0 { parts.append("\(batch.duplicates) duplicate(s)") }
        if batch.quarantined > 0 { parts.append("\(batch.quarantined) quarantined") }
        if batch.failed > 0 { parts.append("\(batch.failed) failed (ncfs items --status failed)") }
        return line + ": " + parts.joined(separator: ", ")
    }

    /// `ncfs status --watch`: the batch in progress, one line redrawn every `interval` seconds
    /// on a terminal (a line each time otherwise), until nothing is in progress or waiting (or
    /// after `count` lines); then how the batch ended.
    static func watch(folder: URL, interval: Double, count: Int?) throws {
        let tty = isatty(STDOUT_FILENO) == 1
        var lines = 0
        var sawWork = false
        while true {
            let now = try read(folder: folder)
            let batch = now.batch
            guard batch.inProgress else {
                if tty && lines > 0 { print("") }
                if batch.finished > 0 {
                    print((sawWork ? "done: " : "nothing in progress; the last batch: ") + finishedLine(batch))
                } else {
                    print("nothing in progress")
                }
                return
            }
            sawWork = true
            let width = 30
            let filled = batch.total > 0 ? min(width, width * batch.finished / batch.total) : 0
            let line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + batchLine(batch)
            if tty {
                FileHandle.standardOutput.write(Data(("\r\u{1B}[2K" + line).utf8))
            } else {
                // Unbuffered, so a pipe sees each line when it is made.
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
            lines += 1
            if let count, lines >= count {
                if tty { print("") }
                return
            }
            usleep(UInt32(interval * 1_000_000))
        }
    }
}

/// `ncfs items`: the catalog's items with their paths, URLs and errors.
struct Items: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "items",
        abstract: "List ingested items (newest first) with their state, paths, URLs and errors.")

    @OptionGroup var location: StateLocation

    @Option(name: .long, help: "Only items in this state (pending, uploading, deriving, succeeded, failed, duplicate, quarantined); repeatable.")
    var status: [String] = []

    @Option(name: .long, help: "At most this many items (default 100; 0 = all).")
    var limit = 100

    @Flag(name: .long, help: "A JSON array of full records.")
    var json = false

    func run() throws { try reportingFailures(body) }

    private func body() throws {
        var states: Set<IngestItem.State> = []
        for name in status {
            guard let state = IngestItem.State(rawValue: name) else {
                throw CLIError(message: "--status \(name): expected one of \(IngestItem.State.allCases.map(\.rawValue).joined(separator: ", "))", code: 2)
            }
            states.insert(state)
        }
        let path = IngestProgress.catalogPath(try location.folder())
        guard FileManager.default.fileExists(atPath: path) else {
            if json { print("[]") } else { print("no catalog at \(path): nothing was ingested by this mount yet") }
            return
        }
        let items: [IngestItem]
        do {
            items = try SQLiteCatalog(readOnlyPath: path).items(states: states, limit: limit == 0 ? nil : limit)
        } catch {
            throw CLIError(message: "cannot read the catalog \(path): \(error)", code: 1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(items), as: UTF8.self))
            return
        }
        for item in items {
            var line = "\(String(item.id).padding(toLength: 6, withPad: " ", startingAt: 0)) \(item.state.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(Format.size(item.size, human: true).padding(toLength: 7, withPad: " ", startingAt: 0)) \(item.name)"
            if let path = item.originalPath { line += "\n         → /\(path)" }
            if let of = item.duplicateOf { line += "\n         duplicate of item \(of)" }
            if let url = item.originalURL, item.state == .succeeded { line += "\n         \(url)" }
            if !item.derivatives.isEmpty { line += "\n         \(item.derivatives.count) derivatives: " + item.derivatives.map { "\($0.kind) \($0.width)×\($0.height)" }.joined(separator: ", ") }
            if let error = item.persistError { line += "\n         error: \(error)" }
            if let error = item.derivativeError { line += "\n         derivatives: \(error)" }
            if let reason = item.quarantineReason { line += "\n         quarantined: \(reason)" }
            print(line)
        }
    }
}

/// `ncfs backfill`: failed items back to pending, and staged files no item holds entered.
struct Backfill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Reschedule failed items (and files left in incoming/ that were never taken).",
        discussion: """
            Works on the catalog directly, so it is the same while the mount runs (the daemon \
            picks the items up within a second) and while it does not (the next mount does).
            """)

    @OptionGroup var location: StateLocation

    @Option(name: .long, help: "At most this many failed items.")
    var limit = 50

    @Option(name: .long, help: "A file in incoming/ counts as left behind once untouched this many seconds.")
    var staleAfter: Double = 60

    func run() throws { try reportingFailures(body) }

    private func body() throws {
        guard limit >= 1 else { throw CLIError(message: "--limit takes 1 or more", code: 2) }
        let folder = try location.folder()
        let path = IngestProgress.catalogPath(folder)
        guard FileManager.default.fileExists(atPath: path) else {
            print("no catalog at \(path): nothing to backfill")
            return
        }
        do {
            let catalog = try SQLiteCatalog(path: path)
            let staging = IngestProgress.stagingFolder(folder)
            // A failed item whose staged copy is gone (removed or renamed in incoming/) cannot
            // be retried: it would only fail again. It is left as it is, and said so.
            var retry: [Int64] = []
            var gone = 0
            for item in try catalog.items(states: [.failed], limit: nil).reversed() where retry.count < limit {
                if let staged = item.stagingPath, FileManager.default.fileExists(atPath: staging.appendingPathComponent(staged).path) {
                    retry.append(item.id)
                } else {
                    gone += 1
                    let was = item.stagingPath.map { "incoming/\($0) is missing" } ?? "it was removed from incoming/"
                    print("skipped item \(item.id) \(item.name): the staged copy is gone (\(was)); `ncfs dismiss \(item.id)` clears it")
                }
            }
            let items = try catalog.reschedule(ids: retry, now: Date())
            for item in items { print("rescheduled item \(item.id) \(item.name)") }
            let taken = Set(try catalog.allInIncoming().compactMap(\.stagingPath))
            var entered = 0
            for relative in IngestService.untakenFiles(in: staging, taken: taken) {
                var st = stat()
                guard lstat(staging.appendingPathComponent(relative).path, &st) == 0,
                      Date().timeIntervalSince1970 - Double(st.st_mtim.tv_sec) >= staleAfter else { continue }
                do {
                    let item = try catalog.add(name: PathBytes.components(relative).last ?? "", stagingPath: relative,
                                               bucket: "", size: Int64(st.st_size), sourceMtime: Int64(st.st_mtim.tv_sec), now: Date())
                    print("entered incoming/\(relative) as item \(item.id)")
                    entered += 1
                } catch CatalogError.conflict {
                    // Taken by the daemon meanwhile.
                }
            }
            print("\(items.count) failed item(s) rescheduled, \(entered) left-behind file(s) entered"
                  + (gone > 0 ? ", \(gone) skipped (staged copy gone)" : ""))
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError(message: "backfill: \(error)", code: 1)
        }
    }
}
