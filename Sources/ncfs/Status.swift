import ArgumentParser
import Foundation
import Journal

/// `ncfs status`: the mount's pending uploads, read from its journal (read-only, so it works
/// while the daemon runs, and after it stopped with uploads left).
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "List the uploads a mount has not finished (files, bytes, age, errors).",
        discussion: """
            The journal is found like `ncfs mount` finds it: --state-dir, else the default state \
            folder for the configured URL and login. No request is made and no password is needed.
            """
    )

    @Option(name: .long, help: "WebDAV URL (env NEXTCLOUD_WEBDAV_BASE_URL).")
    var url: String?

    @Option(name: .long, help: "Login name (env NEXTCLOUD_WEBDAV_USER).")
    var user: String?

    @Option(name: .long, help: "Config file of NAME=value lines (default: $XDG_CONFIG_HOME/ncfs/ncfs.conf).")
    var config: String?

    @Option(name: .long, help: "The mount's state folder (as given to `ncfs mount --state-dir`).")
    var stateDir: String?

    @Flag(name: .long, help: "One JSON object: totals and every pending upload.")
    var json = false

    func run() throws {
        let folder: URL
        if let stateDir {
            folder = URL(fileURLWithPath: stateDir)
        } else {
            let sources: SettingSources
            do {
                sources = try SettingSources(config: config, environment: ProcessInfo.processInfo.environment)
            } catch {
                throw fail(error)
            }
            guard let url = sources.value(url, "NEXTCLOUD_WEBDAV_BASE_URL") else {
                throw CLIError(message: "no WebDAV URL configured: pass --url (or --state-dir), as for `ncfs mount`", code: 3)
            }
            folder = Mount.defaultFolder(.state, baseURL: url, user: sources.value(user, "NEXTCLOUD_WEBDAV_USER"))
        }
        let path = folder.appendingPathComponent("journal.sqlite").path
        guard FileManager.default.fileExists(atPath: path) else {
            if json { print(#"{"pending":0,"bytes":0,"failed":0,"uploads":[]}"#) } else { print("no journal at \(path): nothing pending (this mount never wrote)") }
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
            let items: [[String: Any]] = uploads.map { upload in
                var item: [String: Any] = ["path": upload.remotePath, "bytes": upload.size, "state": upload.state.rawValue,
                                           "attempts": upload.attempts, "age_seconds": Int(now.timeIntervalSince(upload.createdAt)),
                                           "mtime": upload.mtime]
                if let error = upload.lastError { item["error"] = error }
                return item
            }
            let summary: [String: Any] = ["pending": uploads.count, "bytes": uploads.reduce(Int64(0)) { $0 + $1.size },
                                          "failed": uploads.filter { $0.state == .failed }.count, "uploads": items]
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if uploads.isEmpty {
            print("nothing pending")
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
