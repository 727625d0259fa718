import ArgumentParser
import FileSystem
import Foundation
import Ingest
import WebDAV

/// `ncfs dismiss`: failed, duplicate or quarantined items removed from the catalog (and so
/// from `ncfs status`), by id or by state.
struct Dismiss: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dismiss",
        abstract: "Remove failed, duplicate or quarantined items from the catalog (by id, or all in a state).",
        discussion: """
            Dismissed items leave the catalog: `ncfs status` no longer counts them and `ncfs items` \
            no longer lists them. Nothing on the server is touched (an original a failed item \
            uploaded stays where it is). Items still being worked on and succeeded items (the \
            record of what is on the server) are never dismissed, nor a failed item whose file is \
            still in incoming/: remove the file there first (or retry it with `ncfs backfill`). \
            Works while the mount runs.
            """)

    @OptionGroup var location: StateLocation

    @Option(name: .long, help: "Dismiss every item in this state (failed, duplicate, quarantined); repeatable.")
    var state: [String] = []

    @Flag(name: .long, help: "Only list what would be dismissed.")
    var dryRun = false

    @Argument(help: "Item ids (as `ncfs items` shows them).")
    var ids: [Int64] = []

    func run() throws { try reportingFailures(body) }

    private func body() throws {
        let allowed = SQLiteCatalog.dismissableStates
        var states: Set<IngestItem.State> = []
        for name in state {
            guard let state = IngestItem.State(rawValue: name), allowed.contains(state) else {
                throw CLIError(message: "--state \(name): expected one of \(allowed.map(\.rawValue).sorted().joined(separator: ", ")) (items being worked on and succeeded items are not dismissed)", code: 2)
            }
            states.insert(state)
        }
        guard !states.isEmpty || !ids.isEmpty else {
            throw CLIError(message: "name item ids or --state (e.g. `ncfs dismiss --state failed`)", code: 2)
        }
        let folder = try location.folder()
        let path = IngestProgress.catalogPath(folder)
        guard FileManager.default.fileExists(atPath: path) else {
            throw CLIError(message: "no catalog at \(path): nothing was ingested by this mount yet", code: 1)
        }
        let staging = IngestProgress.stagingFolder(folder)
        do {
            let catalog = try SQLiteCatalog(path: path)
            var chosen: [IngestItem] = []
            var refused = 0
            for id in ids {
                guard let item = try catalog.item(id) else {
                    print("item \(id): no such item")
                    refused += 1
                    continue
                }
                guard allowed.contains(item.state) else {
                    print("item \(id) \(item.name) is \(item.state.rawValue): only failed, duplicate and quarantined items are dismissed")
                    refused += 1
                    continue
                }
                chosen.append(item)
            }
            if !states.isEmpty {
                let named = Set(chosen.map(\.id))
                chosen += try catalog.items(states: states, limit: nil).reversed().filter { !named.contains($0.id) }
            }
            var dismissable: [IngestItem] = []
            for item in chosen {
                if let staged = item.stagingPath, FileManager.default.fileExists(atPath: staging.appendingPathComponent(staged).path) {
                    print("item \(item.id) \(item.name): its file is still in incoming/\(staged); remove it there first, or retry it with `ncfs backfill`")
                    if ids.contains(item.id) { refused += 1 }
                    continue
                }
                dismissable.append(item)
            }
            let dismissed = dryRun ? dismissable : try catalog.dismiss(ids: dismissable.map(\.id))
            for item in dismissed {
                var line = "\(dryRun ? "would dismiss" : "dismissed") item \(item.id) \(item.name) (\(item.state.rawValue))"
                if item.state == .failed, let original = item.originalPath { line += "; /\(original) on the server is left as it is" }
                print(line)
            }
            print("\(dismissed.count) item(s) \(dryRun ? "would be " : "")dismissed" + (refused > 0 ? ", \(refused) not" : ""))
            if refused > 0 { throw ExitCode(1) }
        } catch let error as CLIError {
            throw error
        } catch let error as ExitCode {
            throw error
        } catch {
            throw CLIError(message: "dismiss: \(error)", code: 1)
        }
    }
}

/// `ncfs quarantine`: succeeded items whose files are gone or wrong on the server.
struct Quarantine: RemoteCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "Check succeeded items against the server; mark those with missing or wrong files quarantined.",
        discussion: """
            Each original and derivative must exist with the size recorded at upload. One \
            PROPFIND per date folder touched. Quarantined items keep their record; re-ingest the \
            file (or restore it from the trash) to repair them.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "The mount's state folder (as given to `ncfs mount --state-dir`).")
    var stateDir: String?

    @Flag(name: .long, help: "Only report; change nothing.")
    var dryRun = false

    @Option(name: .long, help: "Check at most this many items (newest first; 0 = all).")
    var limit = 0

    func run(client: WebDAVClient) throws {
        let folder = try StateLocation.folder(url: connection.url, user: connection.user, config: connection.config, stateDir: stateDir)
        let path = IngestProgress.catalogPath(folder)
        guard FileManager.default.fileExists(atPath: path) else {
            print("no catalog at \(path): nothing to check")
            return
        }
        let catalog = try SQLiteCatalog(path: path)
        let items = try catalog.items(states: [.succeeded], limit: limit == 0 ? nil : limit)
        var listings: [String: [String: Int64]?] = [:]
        func size(of remote: String) throws -> Int64?? {
            let parent = PathBytes.split(remote).parent
            if listings[parent] == nil {
                do {
                    let children = try client.list(parent, properties: .listing).children
                    listings[parent] = Dictionary(children.map { ($0.name, $0.size ?? $0.contentLength ?? -1) }, uniquingKeysWith: { a, _ in a })
                } catch let error as DAVError where error.kind == .notFound {
                    listings[parent] = .some(nil)
                }
            }
            guard let listing = listings[parent]!, let found = listing[PathBytes.lastComponent(remote)] else { return .some(nil) }
            return .some(found)
        }
        var broken = 0
        for var item in items {
            var problems: [String] = []
            var files: [(String, Int64)] = []
            if let original = item.originalPath { files.append((original, item.size)) }
            files += item.derivatives.map { ($0.path, $0.bytes) }
            for (remote, expected) in files {
                switch try size(of: remote) {
                case .some(.none): problems.append("missing /\(remote)")
                case .some(.some(let actual)) where actual != expected: problems.append("/\(remote) has \(actual) bytes, expected \(expected)")
                default: break
                }
            }
            guard !problems.isEmpty else { continue }
            broken += 1
            print("item \(item.id) \(item.name): " + problems.joined(separator: "; "))
            if !dryRun {
                item.state = .quarantined
                item.quarantineReason = problems.joined(separator: "; ")
                try catalog.update(item)
            }
        }
        print("\(items.count) item(s) checked, \(broken) broken\(dryRun ? " (dry run: nothing marked)" : broken > 0 ? ", marked quarantined" : "")")
    }
}
