import ArgumentParser
import Foundation
import HTTPTransport
import Logging
import WebDAV

@main
struct NCFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ncfs",
        abstract: "A Nextcloud media store as plain files.",
        discussion: """
            Connection settings come from flags, then the environment (NEXTCLOUD_WEBDAV_BASE_URL, \
            NEXTCLOUD_WEBDAV_USER, NEXTCLOUD_WEBDAV_APP_PASSWORD or NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE), \
            then the config file. Paths are relative to the configured WebDAV folder.
            Exit status: 0 ok, 1 other failure, 2 usage, 3 configuration, 4 authentication, \
            5 not found, 6 exists/conflict, 7 network or server unavailable, 8 refused by the server, \
            9 unmounted with uploads still pending (kept in the journal for the next mount).
            """,
        version: HTTPClientConfiguration.version,
        subcommands: [
            List.self, Stat.self, DiskUsage.self, Get.self, Put.self, MakeDirectory.self, Move.self, Copy.self,
            Remove.self, Trash.self, Search.self, Doctor.self, Mount.self, Status.self, Items.self, Backfill.self, Dismiss.self,
            Quarantine.self,
        ]
    )
}

/// What every command that talks to the server shares: option parsing, client set-up and the
/// translation of failures into a message and an exit status.
protocol RemoteCommand: ParsableCommand {
    var connection: ConnectionOptions { get }
    func run(client: WebDAVClient) throws
}

extension RemoteCommand {
    func run() throws {
        do {
            let client = try makeClient(connection)
            try run(client: client)
        } catch let error as ExitCode {
            throw error
        } catch {
            throw fail(error)
        }
    }
}

func makeClient(_ options: ConnectionOptions, retry: RetryPolicy? = nil) throws -> WebDAVClient {
    let resolved = try options.resolve()
    var config = HTTPClientConfiguration(credentials: resolved.credentials)
    config.verifyTLS = resolved.verifyTLS
    config.caFile = resolved.caFile
    config.pinnedPublicKey = resolved.pinnedPublicKey
    if let retry { config.retry = retry }
    var logger = Logger(label: "ncfs")
    logger.logLevel = options.verbose ? .debug : .warning
    return try WebDAVClient(baseURL: resolved.baseURL, http: HTTPClient(configuration: config, logger: logger), logger: logger)
}

/// What to do about a TLS refusal `message`: a pinned key that does not match, or a
/// certificate libcurl refused.
func tlsAdvice(for message: String) -> String {
    message.contains("pinned public key") ? pinAdvice : tlsAdvice
}

let pinAdvice = """
    The server's public key is not the one given with --pinned-public-key (NCFS_PINNED_PUBLIC_KEY). \
    Either the server got a new key (pin both the old and the new one, joined with ';', before \
    changing it) or something between you and the server answers in its place. Nothing was sent.
    """

/// What to do about a certificate libcurl refused, for every message that reports one.
let tlsAdvice = """
    The server's TLS certificate was not accepted. If it is signed by a private CA (or is \
    self-signed), pass that CA's certificate with --ca-file CA.pem (PEM); otherwise fix the \
    certificate (expired? issued for another host name?). --insecure turns verification off \
    entirely and is only for test servers you control.
    """

/// Prints a message that says what went wrong and what to do, and picks the exit status.
func fail(_ error: any Error) -> ExitCode {
    let (message, code) = explain(error)
    FileHandle.standardError.write(Data("ncfs: \(message)\n".utf8))
    return ExitCode(code)
}

func explain(_ error: any Error) -> (String, Int32) {
    switch error {
    case let e as ConfigurationError:
        return (e.description, 3)
    case let e as DAVLocation.LocationError:
        return (e.description, 3)
    case let e as DAVError:
        switch e.kind {
        case .unauthorized:
            return ("\(e)\nThe server refused the login. Use an app password (Settings → Security → Devices & sessions), not the account password; accounts with two-factor authentication only accept app passwords. ncfs does not retry this: repeated failures trigger the server's brute-force throttling.", 4)
        case .transport where e.transport?.isTLSVerification == true:
            return ("\(e)\n\(tlsAdvice(for: "\(e)"))", 7)
        case .notFound: return ("\(e)", 5)
        case .alreadyExists, .preconditionFailed, .conflict: return ("\(e)", 6)
        case .transport, .unavailable, .throttled: return ("\(e)", 7)
        case .forbidden, .invalidName, .badRequest, .insufficientStorage, .locked: return ("\(e)", 8)
        case .server, .protocolViolation, .unsupported: return ("\(e)", 1)
        }
    case let e as HTTPError where e.isTLSVerification:
        return ("\(e)\n\(tlsAdvice(for: "\(e)"))", 7)
    case let e as CLIError:
        return (e.message, e.code)
    default:
        return ("\(error)", 1)
    }
}

struct CLIError: Error {
    var message: String
    var code: Int32 = 1
}

// MARK: Output helpers

enum Format {
    static func size(_ bytes: Int64?, human: Bool) -> String {
        guard let bytes else { return "-" }
        guard human else { return String(bytes) }
        let units = ["B", "K", "M", "G", "T", "P"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(bytes)B" : String(format: v < 10 ? "%.1f%@" : "%.0f%@", v, units[i])
    }

    /// Local time as `yyyy-MM-dd HH:mm:ss`, through strftime: a DateFormatter per call costs
    /// more than the whole PROPFIND of a large folder.
    static func date(_ d: Date?) -> String {
        guard let d else { return "-" }
        var t = time_t(d.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
final class ProgressBar: @unchecked Sendable {
    // @unchecked: `lastDraw` is guarded by `lock`; the bar is updated from upload threads.
    private let label: String
    private let enabled = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var lastDraw = Date.distantPast
    private let started = Date()

    init(_ label: String) { self.label = label }

    func update(_ done: Int64, _ total: Int64) {
        guard enabled, total > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = now
        let fraction = Double(done) / Double(total)
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = Double(done) / max(0.001, now.timeIntervalSince(started))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(Int(fraction * 100))% \(Format.size(Int64(rate), human: true))/s ".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
