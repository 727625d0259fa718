import ArgumentParser
import FileSystem
import Foundation
import Ingest
import Logging
import RemoteCache
import WebDAV

/// The `incoming/` settings of `ncfs mount` (also read by `ncfs status`, `items`, `backfill`
/// and `quarantine`, which find the same catalog).
struct IngestOptions: ParsableArguments {
    @Option(name: .long, help: "Name of the ingest folder at the mount root (-o incoming=NAME).")
    var incoming: String?

    @Flag(name: .long, help: "No incoming/ folder (-o noincoming).")
    var noIncoming = false

    @Option(name: .long, help: "Where ingested files go, relative to the mounted folder (env NEXTCLOUD_UPLOAD_PREFIX; default pindeck/media-uploads).")
    var uploadPrefix: String?

    @Option(name: .long, help: "Date folders from the ingest day (ingest) or the photo's EXIF capture date (exif).")
    var dateSource: String?

    @Option(name: .long, help: "Time zone of the date folders, an IANA name such as Europe/Berlin (env NCFS_TIME_ZONE; default: the system's).")
    var timeZone: String?

    @Option(name: .long, help: "Items processed at once (default: twice the number of cores, at least 4).")
    var ingestWorkers: Int?

    @Option(name: .long, help: "ncfs-derive processes at once, each holding one decoded image (default: the number of cores).")
    var deriveWorkers: Int?

    @Option(name: .long, help: "Seconds a closed file in incoming/ must stay untouched before it is taken (default 2).")
    var ingestDelay: Double?

    @Option(name: .long, help: "Attempts before an item is marked failed (default 8).")
    var ingestAttempts: Int?

    @Option(name: .long, help: "Longest edge of the preview derivative in pixels (default 2048).")
    var previewEdge: Int?

    @Flag(name: .long, help: "Also create a public link per original (OCS share API) and store it in the catalog.")
    var shareLinks = false

    @Option(name: .long, help: "The ncfs-derive executable (default: next to ncfs).")
    var deriveTool: String?
}

extension Mount {
    /// What `serve` needs to start the pipeline.
    struct IngestSetup {
        var folderName: String
        var settings: IngestService.Settings
        var catalogPath: String
        var stagingFolder: URL
    }

    /// The ingest settings (flags > `-o` > environment > config file), checked. nil when the
    /// mount has no incoming/ folder (read-only, or turned off).
    static func ingestSetup(_ flags: IngestOptions, mountOptions: MountOptions, state: URL, sources: SettingSources,
                            baseURL: String) throws -> IngestSetup? {
        if flags.noIncoming || mountOptions.noIncoming { return nil }
        let name = flags.incoming ?? mountOptions.incoming ?? "incoming"
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw CLIError(message: "--incoming \(name): expected a folder name", code: 2)
        }
        let tool = flags.deriveTool.map { URL(fileURLWithPath: $0) } ?? defaultDeriveTool()
        guard FileManager.default.isExecutableFile(atPath: tool.path) else {
            throw CLIError(message: "the derivative tool \(tool.path) is missing or not executable (build it with `swift build --product ncfs-derive`, or pass --derive-tool, or --no-incoming)", code: 1)
        }
        var settings = IngestService.Settings(deriveTool: tool, workDirectory: state.appendingPathComponent("ingest-work"))
        if let bulk = mountOptions.bulkUpload { settings.bulkUpload = bulk }
        let prefix = sources.value(flags.uploadPrefix ?? mountOptions.uploadPrefix, "NEXTCLOUD_UPLOAD_PREFIX") ?? "pindeck/media-uploads"
        settings.prefix = prefix.split(separator: "/").joined(separator: "/")
        guard !settings.prefix.isEmpty, !settings.prefix.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw CLIError(message: "upload prefix \(prefix): expected a folder path such as pindeck/media-uploads", code: 2)
        }
        if settings.prefix == name || settings.prefix.hasPrefix(name + "/") {
            throw CLIError(message: "upload prefix \(prefix) lies inside the incoming folder", code: 2)
        }
        if let text = flags.dateSource {
            guard let source = IngestService.DateSource(rawValue: text) else {
                throw CLIError(message: "--date-source \(text): expected ingest or exif", code: 2)
            }
            settings.dateSource = source
        }
        if let zoneName = sources.value(flags.timeZone, "NCFS_TIME_ZONE") {
            guard let zone = TimeZone(identifier: zoneName) else {
                throw CLIError(message: "time zone \(zoneName): not an IANA zone name (e.g. Europe/Berlin, UTC)", code: 2)
            }
            settings.timeZone = zone
        }
        if let workers = flags.ingestWorkers {
            guard (1...64).contains(workers) else { throw CLIError(message: "--ingest-workers takes 1 to 64", code: 2) }
            settings.workers = workers
        }
        if let derive = flags.deriveWorkers {
            guard (1...64).contains(derive) else { throw CLIError(message: "--derive-workers takes 1 to 64", code: 2) }
            settings.deriveWorkers = derive
        }
        if let delay = flags.ingestDelay ?? mountOptions.ingestDelay {
            guard delay >= 0 else { throw CLIError(message: "--ingest-delay must not be negative", code: 2) }
            settings.quietDelay = delay
        }
        if let attempts = flags.ingestAttempts {
            guard attempts >= 1 else { throw CLIError(message: "--ingest-attempts takes 1 or more", code: 2) }
            settings.maxAttempts = attempts
        }
        if let edge = flags.previewEdge {
            guard (64...16384).contains(edge) else { throw CLIError(message: "--preview-edge takes 64 to 16384", code: 2) }
            settings.previewEdge = edge
        }
        settings.shareLinks = flags.shareLinks
        if let token = sources.value(nil, "NEXTCLOUD_PUBLIC_SHARE_TOKEN") {
            guard token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw CLIError(message: "NEXTCLOUD_PUBLIC_SHARE_TOKEN: a share token has only letters and digits", code: 2)
            }
            let base = sources.value(nil, "NEXTCLOUD_PUBLIC_BASE_URL") ?? serverOrigin(baseURL)
            let sharePath = (sources.value(nil, "NEXTCLOUD_PUBLIC_SHARE_PATH") ?? settings.prefix).split(separator: "/").joined(separator: "/")
            settings.publicShare = .init(token: token, base: base.hasSuffix("/") ? String(base.dropLast()) : base, sharePath: sharePath)
        }
        return IngestSetup(folderName: name, settings: settings, catalogPath: state.appendingPathComponent("catalog.sqlite").path,
                           stagingFolder: state.appendingPathComponent("incoming"))
    }

    /// `ncfs-derive` next to this executable.
    static func defaultDeriveTool() -> URL {
        let me = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        return me.deletingLastPathComponent().appendingPathComponent("ncfs-derive")
    }

    /// "https://cloud.example.com" of "https://cloud.example.com/remote.php/dav/files/alice".
    /// Nextcloud installed under a path (https://example.com/nextcloud) needs
    /// NEXTCLOUD_PUBLIC_BASE_URL.
    static func serverOrigin(_ baseURL: String) -> String {
        guard let url = URLComponents(string: baseURL), let scheme = url.scheme, let host = url.host else { return baseURL }
        let prefix = url.path.range(of: "/remote.php/").map { String(url.path[..<$0.lowerBound]) } ?? ""
        return "\(scheme)://\(host)\(url.port.map { ":\($0)" } ?? "")\(prefix)"
    }

    /// Opens the catalog, shows incoming/ and starts the pipeline.
    static func startIngest(_ setup: IngestSetup, fs: FileSystem, cache: MetadataCache, client: WebDAVClient,
                            logger: Logger) throws -> IngestService {
        let folder = try IncomingFolder(name: setup.folderName, root: setup.stagingFolder)
        // The rules the rest of the mount applies (the same client's, with the server's
        // forbidden names once its capabilities are read).
        folder.nameRules = client.nameRules
        let catalog = try SQLiteCatalog(path: setup.catalogPath)
        let service = try IngestService(settings: setup.settings, catalog: catalog, folder: folder, store: client, logger: logger) {
            [weak fs, cache] folders, left in
            for path in folders { cache.invalidate(path) }
            if let left { fs?.incomingFileLeft(left) }
        }
        fs.enableIncoming(folder)
        service.start()
        return service
    }
}
