import ArgumentParser
import FUSEBridge
import FileSystem
import Foundation
import HTTPTransport
import Ingest
import Logging
import RemoteCache
import SystemPackage
import WebDAV

/// `ncfs mount`: the composition root of the mount — clients, metadata cache, filesystem,
/// FUSE session. Runs in the foreground until unmounted (`fusermount3 -u`, SIGINT/SIGTERM), or
/// with `--background` returns once mounted, the way mount(8) expects of a helper
/// (`scripts/mount.fuse.ncfs`). Takes the URL as a first operand too, as mount(8) passes it.
struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the WebDAV folder on MOUNTPOINT (writable; -o ro for read-only).",
        usage: "ncfs mount [<options>] [URL] MOUNTPOINT [-o OPTIONS]",
        discussion: """
            -o takes comma-separated options: poll=SECONDS (root ETag poll, 0 = off), attr_timeout=SECONDS, \
            read_timeout=SECONDS, dirsize=zero (folders report size 0 instead of their recursive size), \
            walk_ahead=N (subfolders listed ahead of a tree walk, 0 = off), \
            user=LOGIN, password_file=PATH, config=PATH, cache_dir=PATH, cache_size=SIZE, \
            whole_file_max=SIZE (a file read at random up to this size is fetched whole once; default 256M, 0 = never), \
            log=PATH (where --background sends the daemon's messages), state_dir=PATH, upload_delay=SECONDS, \
            close=crashsafe|durable (crashsafe, the default: a closed file survives a daemon crash, not a power cut; durable: \
            a power cut too, at an fsync per close), bulk=on|off (small files many to a request where Nextcloud offers \
            bulk upload; default on), \
            drain_timeout=SECONDS, incoming=NAME, noincoming, upload_prefix=PATH, ingest_delay=SECONDS, \
            ro (read-only), nonempty (mount over a folder that is not empty, hiding what is in it; refused \
            otherwise), allow_other, and other libfuse mount options. A password is \
            never accepted in -o (password= is refused). Options mount(8) and fstab add (rw, dev, suid, \
            _netdev, noauto, nofail, user, defaults, comment=, x-*, …) are accepted and ignored. Unmount with \
            `fusermount3 -u MOUNTPOINT`; pending uploads are drained first (exit 9 if some remain).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @OptionGroup(title: "Ingest (incoming/)") var ingest: IngestOptions

    @Argument(help: ArgumentHelp("The WebDAV URL (optional: the form mount(8) uses; or --url), then an existing empty folder.",
                                 valueName: "url-and-mountpoint"))
    var operands: [String] = []

    @Option(name: .customShort("o"), help: "Mount options (comma-separated; may be repeated).")
    var mountOptions: [String] = []

    @Option(name: .long, help: "Seconds a folder listing is trusted without asking the server when polling is off.")
    var attrTimeout: Double = 1

    @Option(name: .long, help: "Seconds between polls of the root ETag (0 = no poll).")
    var poll: Double = 30

    @Option(name: .long, help: "Seconds a read may stall or retry before it fails with EIO.")
    var readTimeout: Double = 10

    @Option(name: .long, help: "Folder for cached file content (default: $CACHE_DIRECTORY, else $XDG_CACHE_HOME/ncfs or ~/.cache/ncfs, each plus a folder per URL and login).")
    var cacheDir: String?

    @Option(name: .long, help: "Bytes of file content kept on disk, e.g. 512M or 10G (K, M, G, T are powers of 1024; default 2G).")
    var cacheSize: String?

    @Option(name: .long, help: "Folder for staged writes and the upload journal; must survive reboots (default: $STATE_DIRECTORY, else $XDG_STATE_HOME/ncfs or ~/.local/state/ncfs, each plus a folder per URL and login).")
    var stateDir: String?

    @Option(name: .long, help: "Seconds unmount waits for pending uploads before leaving them in the journal for the next start.")
    var drainTimeout: Double = 60

    @Flag(name: .long, help: "Return once mounted and leave the daemon running (what mount helpers need); its messages go to -o log=PATH.")
    var background = false

    /// Everything a mount needs, checked before anything starts: a `--background` parent
    /// reports these errors itself instead of leaving them to the daemon.
    struct Setup {
        var mountpoint: String
        var connection: ResolvedConnection
        var attrTimeout: Double
        var poll: Double
        var readTimeout: Double
        var fileSystem = FileSystem.Options()
        /// nil: a read-only mount.
        var writes: FileSystem.WriteOptions?
        var drainTimeout: Double
        /// nil: no incoming/ folder.
        var ingest: IngestSetup?
        var fuseOptions: [String]
        var log: String?
    }

    func run() throws {
        // Folders this run created (state, cache and their parents); a mount that fails before
        // it is up removes them again if they are still empty.
        var created: [URL] = []
        var mounted = false
        do {
            let setup = try prepare(creating: &created)
            if background { try startInBackground(log: setup.log) } else { try serve(setup, mounted: &mounted) }
        } catch {
            // A `--background` parent gets here only once its daemon has exited.
            if !mounted { Mount.removeEmptyFolders(created) }
            // systemd shows the status line, and a `--background` parent prints it.
            SystemdNotify.send("STATUS=" + explain(error).0.replacingOccurrences(of: "\n", with: " "))
            throw fail(error)
        }
    }

    func prepare(creating created: inout [URL]) throws -> Setup {
        let options = try MountOptions(parsing: mountOptions)
        var connection = self.connection
        let mountpoint: String
        switch operands.count {
        case 1:
            mountpoint = operands[0]
        case 2:
            guard connection.url == nil else { throw CLIError(message: "the URL is given twice: as --url and as the first operand", code: 2) }
            connection.url = operands[0]
            mountpoint = operands[1]
        default:
            throw CLIError(message: "expected [URL] MOUNTPOINT, got \(operands.count) operands", code: 2)
        }
        if let login = options.login { connection.user = login }
        if let path = options.passwordFile { connection.passwordFile = path }
        if let path = options.config { connection.config = path }
        var resolved = try connection.resolve()
        // Paths read after start-up are made absolute: the daemon leaves its working folder.
        resolved.caFile = resolved.caFile.map { URL(fileURLWithPath: $0).path }

        let mountpointPath = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
        try Mount.checkMountpoint(mountpointPath, allowNonEmpty: options.nonEmpty)
        var setup = Setup(mountpoint: mountpointPath, connection: resolved,
                          attrTimeout: options.attrTimeout ?? attrTimeout, poll: options.poll ?? poll,
                          readTimeout: options.readTimeout ?? readTimeout, drainTimeout: options.drainTimeout ?? drainTimeout,
                          fuseOptions: options.fuse, log: options.log)
        setup.fileSystem.zeroFolderSizes = options.zeroFolderSizes ?? false
        if let uid = options.uid { setup.fileSystem.uid = uid }
        if let gid = options.gid { setup.fileSystem.gid = gid }
        if let umask = options.umask { setup.fileSystem.umask = umask }
        if let window = options.walkAhead { setup.fileSystem.walkAhead.window = window }
        if let size = options.wholeFileMax { setup.fileSystem.readAhead.wholeFileMax = size }
        if let size = options.cacheSize {
            setup.fileSystem.contentCache.limit = size
        } else if let text = cacheSize {
            guard let size = MountOptions.size(text) else { throw CLIError(message: "--cache-size \(text): expected a size such as 512M or 10G", code: 2) }
            setup.fileSystem.contentCache.limit = size
        }
        let folder = (options.cacheDirectory ?? cacheDir).map { URL(fileURLWithPath: $0) }
            ?? Mount.defaultFolder(.cache, baseURL: resolved.baseURL, user: resolved.credentials?.user)
        setup.fileSystem.contentCache.directory = try Mount.preparePrivateFolder(folder, created: &created)
        if !options.readOnly {
            let state = (options.stateDirectory ?? stateDir).map { URL(fileURLWithPath: $0) }
                ?? Mount.defaultFolder(.state, baseURL: resolved.baseURL, user: resolved.credentials?.user)
            var writes = FileSystem.WriteOptions(directory: try Mount.preparePrivateFolder(state, created: &created))
            if let delay = options.uploadDelay { writes.settleDelay = delay }
            if let crashSafe = options.crashSafeClose { writes.crashSafeClose = crashSafe }
            if let bulk = options.bulkUpload { writes.bulkUpload = bulk }
            setup.writes = writes
            let sources = try SettingSources(config: connection.config, environment: ProcessInfo.processInfo.environment)
            setup.ingest = try Mount.ingestSetup(ingest, mountOptions: options, state: writes.directory, sources: sources,
                                                 baseURL: resolved.baseURL)
        }
        return setup
    }

    /// Mounts and serves in this process until unmounted; `mounted` turns true once the mount
    /// is live.
    func serve(_ setup: Setup, mounted: inout Bool) throws {
        // A daemon must not keep the folder it was started from busy (that filesystem could
        // not be unmounted); every path it still needs is absolute by now.
        chdir("/")
        FUSEMount.limitMallocArenas()
        // One daemon per state folder, held until this function returns (before anything
        // reads or writes the state, and before any request).
        let stateLock = try setup.writes.map { try StateLock.acquire(folder: $0.directory, mountpoint: setup.mountpoint) }
        defer { stateLock?.release() }
        var logger = Logger(label: "ncfs")
        logger.logLevel = connection.verbose ? .debug : .warning
        func client(stall: Double, budget: Double) throws -> WebDAVClient {
            var config = HTTPClientConfiguration(credentials: setup.connection.credentials)
            config.verifyTLS = setup.connection.verifyTLS
            config.caFile = setup.connection.caFile
            config.pinnedPublicKey = setup.connection.pinnedPublicKey
            config.stallTimeout = .milliseconds(Int(stall * 1000))
            config.retry.budget = .milliseconds(Int(budget * 1000))
            return try WebDAVClient(baseURL: setup.connection.baseURL, http: HTTPClient(configuration: config, logger: logger), logger: logger)
        }
        // Metadata keeps the transport's patient defaults (a listing may wait out a
        // brute-force delay); content reads fail within `readTimeout`.
        let metadata = try client(stall: 30, budget: 60)
        let reader = try client(stall: setup.readTimeout, budget: setup.readTimeout)
        let cache = MetadataCache(client: metadata, configuration: .init(
            freshness: .milliseconds(Int(setup.attrTimeout * 1000)),
            pollInterval: setup.poll > 0 ? .milliseconds(Int(setup.poll * 1000)) : nil), logger: logger)
        var fsOptions = setup.fileSystem
        // Every wait for bytes ends: a failing GET normally ends within its stall timeout plus
        // its retry budget (each `readTimeout`); this bounds the wait even if it does not.
        fsOptions.readAhead.timeout = 2 * setup.readTimeout + 5
        let fs = FileSystem(cache: cache, reader: reader, options: fsOptions, logger: logger)
        // Fail before mounting when the cache folder is unusable (every open would be EIO), the
        // server is unreachable or the credentials are wrong.
        if let problem = fs.contentCacheProblem { throw CLIError(message: problem, code: 1) }
        try Mount.checkRoot(cache, url: setup.connection.baseURL)
        // statfs is answered from the quota, fetched here once rather than by the first `df`,
        // `find` or file manager after mounting (then at most once a minute).
        _ = try? cache.quotaInfo()
        if let writes = setup.writes {
            // Uploads get the patient client: a PUT may wait out a 423 or a brute-force delay.
            try fs.enableWrites(writes, client: metadata)
        }
        var ingestService: IngestService?
        if let ingest = setup.ingest {
            do {
                ingestService = try Mount.startIngest(ingest, fs: fs, cache: cache, client: metadata, logger: logger)
            } catch {
                throw CLIError(message: "cannot start the ingest pipeline: \(error)", code: 1)
            }
        }
        var mountOptions = FUSEMount.Options()
        mountOptions.fuseOptions = setup.fuseOptions
        let mount = FUSEMount(fileSystem: fs, mountpoint: setup.mountpoint, options: mountOptions, logger: logger)
        try mount.run(ready: {
            mounted = true
            cache.startPolling()
            SystemdNotify.send("READY=1\nSTATUS=mounted on \(setup.mountpoint)")
            // One line saying what is where (into the log with --background).
            Mount.say(Mount.readyLine(setup))
        }, stopping: { signal in
            let name = [SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP"][signal] ?? "signal \(signal)"
            Mount.say("ncfs: \(name) received: unmounting \(setup.mountpoint)")
        })
        cache.stopPolling()
        // Files still open for writing never get their close now: say what becomes of each.
        let abandoned = fs.abandonOpenWrites()
        for line in abandoned.lines { Mount.say("ncfs: " + line) }
        if let ingestService {
            // Items keep their state in the catalog; a step cut short resumes at the next start.
            let left = ingestService.stop(timeout: min(setup.drainTimeout, 30))
            if left > 0 { logger.notice("unmounted with \(left) ingest item(s) mid-step; they resume at the next mount") }
        }
        let pending = fs.pendingUploads
        if pending.count > 0 {
            logger.notice("unmounted; waiting up to \(Int(setup.drainTimeout)) s for \(pending.count) pending upload(s)")
            SystemdNotify.send("STATUS=uploading \(pending.count) file(s) before exiting")
        }
        let left = fs.drainUploads(timeout: setup.drainTimeout) + abandoned.kept
        let attributesLeft = fs.drainAttributes(timeout: min(setup.drainTimeout, 30))
        if attributesLeft > 0 {
            logger.notice("\(attributesLeft) mode or owner change(s) not stored on the server yet; kept in the state folder for the next mount")
        }
        if left > 0 {
            throw CLIError(message: "unmounted with \(left) upload(s) still pending; they are kept in the journal and resume at the next mount (`ncfs status` lists them)",
                           code: 9)
        }
        Mount.say("ncfs: stopped: \(setup.mountpoint) unmounted\(setup.writes == nil ? "" : ", every upload done")")
    }

    /// One line on standard output (the log with --background): the daemon's own messages
    /// about starting and stopping, which are not warnings.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    // MARK: Cache and state folders

    enum FolderKind {
        /// Content cache: may be wiped at any time.
        case cache
        /// Staged writes and the upload journal: must survive reboots.
        case state
    }

    /// The cache: `$CACHE_DIRECTORY` (systemd's `CacheDirectory=`; the first if it lists
    /// several), else `$XDG_CACHE_HOME/ncfs` or `~/.cache/ncfs`. The state: `$STATE_DIRECTORY`,
    /// else `$XDG_STATE_HOME/ncfs` or `~/.local/state/ncfs`. Inside either, one folder per URL
    /// and login, so two different mounts never share one, and a remount finds its own again.
    static func defaultFolder(_ kind: FolderKind, baseURL: String, user: String?,
                              environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        func nonEmpty(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let (systemdName, xdgName, fallback) = switch kind {
        case .cache: ("CACHE_DIRECTORY", "XDG_CACHE_HOME", "/.cache")
        case .state: ("STATE_DIRECTORY", "XDG_STATE_HOME", "/.local/state")
        }
        let base: URL
        if let systemd = nonEmpty(systemdName)?.split(separator: ":").first {
            base = URL(fileURLWithPath: String(systemd))
        } else {
            base = URL(fileURLWithPath: nonEmpty(xdgName) ?? (NSHomeDirectory() + fallback)).appendingPathComponent("ncfs")
        }
        let url = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        return base.appendingPathComponent(StableHash.hex("\(url)\n\(user ?? "")"))
    }

    /// Creates the folder (0700, with its parents) or checks that the existing one is private:
    /// it holds copies of the user's files. (Cache and state folders alike.) The folders it
    /// creates are appended to `created`, outermost first.
    static func preparePrivateFolder(_ folder: URL, created: inout [URL]) throws -> URL {
        var missing: [URL] = []
        var ancestor = folder.standardizedFileURL
        while ancestor.path != "/" && !FileManager.default.fileExists(atPath: ancestor.path) {
            missing.insert(ancestor, at: 0)
            ancestor = ancestor.deletingLastPathComponent()
        }
        defer { created += missing.filter { FileManager.default.fileExists(atPath: $0.path) } }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CLIError(message: "cannot create the folder \(folder.path): \(error.localizedDescription)", code: 1)
        }
        var st = stat()
        guard stat(folder.path, &st) == 0 else {
            throw CLIError(message: "cannot use the folder \(folder.path): \(Errno(rawValue: errno).description)", code: 1)
        }
        if st.st_mode & 0o077 != 0 {
            throw CLIError(message: "the folder \(folder.path) is open to other users (mode \(String(st.st_mode & 0o777, radix: 8))) and would hold copies of your files; run `chmod 700 \(folder.path)` first", code: 3)
        }
        return folder
    }
}
