import ArgumentParser
import FUSEBridge
import FileSystem
import Foundation
import HTTPTransport
import Logging
import RemoteCache
import WebDAV

/// `ncfs mount`: the composition root of the mount — clients, metadata cache, filesystem,
/// FUSE session. Runs in the foreground until unmounted (`fusermount3 -u`, SIGINT/SIGTERM).
struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the WebDAV folder on MOUNTPOINT (read-only for now). Runs in the foreground.",
        discussion: """
            -o takes comma-separated options: poll=SECONDS (root ETag poll, 0 = off), attr_timeout=SECONDS, \
            read_timeout=SECONDS, dirsize=zero (folders report size 0 instead of their recursive size), \
            allow_other, and other libfuse mount options. Options mount(8) passes (rw, ro, dev, suid, \
            _netdev, noauto, nofail, user, defaults, …) are accepted and ignored. Unmount with \
            `fusermount3 -u MOUNTPOINT`.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "An existing empty folder.")
    var mountpoint: String

    @Option(name: .customShort("o"), help: "Mount options (comma-separated; may be repeated).")
    var mountOptions: [String] = []

    @Option(name: .long, help: "Seconds a folder listing is trusted without asking the server when polling is off.")
    var attrTimeout: Double = 1

    @Option(name: .long, help: "Seconds between polls of the root ETag (0 = no poll).")
    var poll: Double = 30

    @Option(name: .long, help: "Seconds a read may stall or retry before it fails with EIO.")
    var readTimeout: Double = 10

    /// Options `mount -t fuse.ncfs` (fstab) passes that mean nothing to a FUSE filesystem here.
    static let ignoredOptions: Set<String> = [
        "rw", "ro", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto", "_netdev",
        "nofail", "user", "users", "nouser", "defaults", "atime", "noatime", "relatime",
    ]

    func run() throws {
        var attrTimeout = self.attrTimeout, poll = self.poll, readTimeout = self.readTimeout
        var fsOptions = FileSystem.Options()
        var fuseOptions: [String] = []
        for option in mountOptions.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0], value = parts.count > 1 ? parts[1] : nil
            func number() throws -> Double {
                guard let value, let n = Double(value), n >= 0 else { throw CLIError(message: "-o \(option): expected a number of seconds", code: 2) }
                return n
            }
            switch key {
            case "poll": poll = try number()
            case "attr_timeout": attrTimeout = try number()
            case "read_timeout": readTimeout = try number()
            case "dirsize":
                guard value == "zero" || value == "recursive" else { throw CLIError(message: "-o dirsize= takes zero or recursive", code: 2) }
                fsOptions.zeroFolderSizes = value == "zero"
            case _ where Mount.ignoredOptions.contains(key): continue
            default: fuseOptions.append(option)
            }
        }

        do {
            let resolved = try connection.resolve()
            var logger = Logger(label: "ncfs")
            logger.logLevel = connection.verbose ? .debug : .warning
            func client(stall: Double, budget: Double) throws -> WebDAVClient {
                var config = HTTPClientConfiguration(credentials: resolved.credentials)
                config.verifyTLS = resolved.verifyTLS
                config.caFile = resolved.caFile
                config.stallTimeout = .milliseconds(Int(stall * 1000))
                config.retry.budget = .milliseconds(Int(budget * 1000))
                return try WebDAVClient(baseURL: resolved.baseURL, http: HTTPClient(configuration: config, logger: logger), logger: logger)
            }
            // Metadata keeps the transport's patient defaults (a listing may wait out a
            // brute-force delay); content reads fail within `readTimeout`.
            let metadata = try client(stall: 30, budget: 60)
            let reader = try client(stall: readTimeout, budget: readTimeout)
            let cache = MetadataCache(client: metadata, configuration: .init(
                freshness: .milliseconds(Int(attrTimeout * 1000)),
                pollInterval: poll > 0 ? .milliseconds(Int(poll * 1000)) : nil), logger: logger)
            // Fail before mounting when the server or the credentials are wrong.
            _ = try cache.listing("")
            let fs = FileSystem(cache: cache, reader: reader, options: fsOptions, logger: logger)
            var mountOptions = FUSEMount.Options()
            mountOptions.fuseOptions = fuseOptions
            let mount = FUSEMount(fileSystem: fs, mountpoint: mountpoint, options: mountOptions, logger: logger)
            try mount.run(ready: {
                cache.startPolling()
                SystemdNotify.send("READY=1")
            })
            cache.stopPolling()
        } catch let error as FUSEMount.MountError {
            throw CLIError(message: error.description, code: 1)
        } catch let error as CLIError {
            throw error
        } catch {
            throw fail(error)
        }
    }
}
