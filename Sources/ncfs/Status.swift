import ArgumentParser
import Foundation
import Journal

/// `ncfs status`: the mount's pending uploads, read from its journal, and its ingest progress,
/// read from its catalog (both read-only, so it works while the daemon runs, and after it
/// stopped with work left).
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "List the uploads a mount has not finished and its ingest progress (counts, bytes, rate, ETA).",
        discussion: """
            The journal and the catalog are found like `ncfs mount` finds them: --state-dir, else the default state \
            folder for the configured URL and login. No request is made and no password is needed.
            """
    )

    @OptionGroup var location: StateLocation

    @Flag(name: .long, help: "One JSON object: totals, every pending upload, and the ingest counts.")
    var json = false

    @Flag(name: .long, help: "Follow the ingest batch in progress until nothing is left to do: done/total, states, recent rate and ETA, redrawn on a terminal (a line each time otherwise).")
    var watch = false

    @Option(name: .long, help: "With --watch: seconds between updates.")
    var interval: Double = 1

    @Option(name: .long, help: "With --watch: stop after this many updates.")
    var count: Int?

    func run() throws { try reportingFailures(body) }

    private func body() throws {
        guard interval >= 0.05 && interval <= 3600 else { throw CLIError(message: "--interval takes 0.05 to 3600 seconds", code: 2) }
        if let count, count < 1 { throw CLIError(message: "--count takes 1 or more", code: 2) }
        let folder = try location.folder()
        if watch { return try IngestProgress.watch(folder: folder, interval: interval, count: count) }
        let path = folder.appendingPathComponent("journal.sqlite").path
        guard FileManager.default.fileExists(atPath: path) else {
            if json {
                let summary = StatusJSON(uploads: [], ingest: try IngestProgress.read(folder: folder), now: Date())
                print(try JSONOutput.encode(summary, pretty: false))
            } else {
                print("no journal at \(path): nothing pending (this mount never wrote)")
                try IngestProgress.read(folder: folder).printSummary()
            }
            return
        }
        let uploads: [PendingUpload]
        do {
            uploads = try UploadJournal(readOnlyPath: path).all()
        } catch {
            throw CLIError(message: "cannot read the journal \(path): \(error)", code: 1)
        }
        let now = Date()
        if json {
            let summary = StatusJSON(uploads: uploads, ingest: try IngestProgress.read(folder: folder), now: now)
            print(try JSONOutput.encode(summary, pretty: false))
            return
        }
        if uploads.isEmpty {
            print("nothing pending")
            try IngestProgress.read(folder: folder).printSummary()
            return
        }
        let total = uploads.reduce(Int64(0)) { $0 + $1.size }
        let failed = uploads.filter { $0.state == .failed }.count
        print("\(uploads.count) upload(s) pending, \(Format.size(total, human: true))\(failed > 0 ? ", \(failed) failed" : "")")
        for upload in uploads {
            let age = Int(now.timeIntervalSince(upload.createdAt))
            var line = "\(upload.state.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(Format.size(upload.size, human: true).padding(toLength: 9, withPad: " ", startingAt: 0)) \(Status.age(age).padding(toLength: 8, withPad: " ", startingAt: 0)) /\(upload.remotePath)"
            if let error = upload.lastError { line += "\n          \(error)" }
            print(line)
        }
        try IngestProgress.read(folder: folder).printSummary()
    }

    static func age(_ seconds: Int) -> String {
        switch seconds {
        case ..<60: "\(seconds)s"
        case ..<3600: "\(seconds / 60)m"
        case ..<86400: "\(seconds / 3600)h"
        default: "\(seconds / 86400)d"
        }
    }
}
