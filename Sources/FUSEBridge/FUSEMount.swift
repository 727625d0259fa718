internal import CFuse3
import Foundation
public import FileSystem
public import Logging

/// One FUSE mount of a FileSystem on the libfuse3 low-level API: the session, the loop
/// threads, the worker pool, signal handling and kernel cache invalidation.
///
/// Lifecycle: `run()` creates the session, mounts, reports readiness (sd_notify), runs the
/// multi-threaded loop until the kernel ends the connection (`fusermount3 -u`, or the
/// SIGINT/SIGTERM/SIGHUP handler which runs `fusermount3 -u -z`), then unmounts and destroys
/// the session. Only `run()`'s thread touches the session pointer except for
/// `fuse_lowlevel_notify_*` (allowed from any thread while the session lives) and
/// `fuse_session_exit` (an atomic flag).
public final class FUSEMount: @unchecked Sendable {
    // @unchecked: `session` is written by `run()` before the loop starts and cleared after it
    // ends, under `lock`; the notify queue and signal handlers read it under `lock`.

    public struct Options: Sendable {
        /// Extra `-o` options for libfuse (e.g. `allow_other`), appended to the defaults
        /// `fsname=ncfs,subtype=ncfs,default_permissions` (plus `ro` for a read-only filesystem).
        public var fuseOptions: [String] = []
        public var workerThreads = 8
        /// libfuse's loop threads (they only read requests and hand them over).
        public var maxIdleLoopThreads: UInt32 = 4
        public init() {}
    }

    let fileSystem: FileSystem
    let workers: WorkerPool
    public let mountpoint: String
    let options: Options
    let logger: Logger
    private let lock = NSLock()
    private var session: OpaquePointer?
    /// Invalidations run here, one at a time, off the worker and loop threads: a dentry
    /// invalidation waits for the directory's lock, which a request blocked on us may hold.
    private let invalidations = DispatchQueue(label: "ncfs.fuse.invalidate")
    private var signalSources: [any DispatchSourceSignal] = []

    public init(fileSystem: FileSystem, mountpoint: String, options: Options = Options(), logger: Logger = Logger(label: "ncfs.fuse")) {
        self.fileSystem = fileSystem
        self.mountpoint = mountpoint
        self.options = options
        self.logger = logger
        self.workers = WorkerPool(threads: options.workerThreads, name: "ncfs-fs")
    }

    public enum MountError: Error, CustomStringConvertible {
        case session, mount(String), loop(Int32)
        public var description: String {
            switch self {
            case .session: return "could not create the FUSE session (bad -o option?)"
            case .mount(let p): return "could not mount on \(p) (is it an existing empty folder, and is /dev/fuse usable?)"
            case .loop(let code): return "the FUSE loop ended with error \(code)"
            }
        }
    }

    /// Mounts and serves until unmounted. `ready` runs once the mount is live.
    /// Caps glibc's malloc arenas at two (see `cfuse3_limit_malloc_arenas`). Call first thing
    /// in a daemon, before its threads allocate.
    public static func limitMallocArenas() { cfuse3_limit_malloc_arenas() }

    public func run(ready: () -> Void = {}) throws {
        var args = fuse_args(argc: 0, argv: nil, allocated: 0)
        defer { fuse_opt_free_args(&args) }
        let defaults = ["fsname=ncfs", "subtype=ncfs", "default_permissions"] + (fileSystem.isWritable ? [] : ["ro"])
        let mountOptions = (defaults + options.fuseOptions).joined(separator: ",")
        for arg in ["ncfs", "-o", mountOptions] { _ = fuse_opt_add_arg(&args, arg) }

        var ops = FUSEOperations.table()
        let userdata = Unmanaged.passUnretained(self).toOpaque()
        guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata) else {
            throw MountError.session
        }
        defer { fuse_session_destroy(se) }
        guard fuse_session_mount(se, mountpoint) == 0 else { throw MountError.mount(mountpoint) }
        lock.lock(); session = se; lock.unlock()
        fileSystem.invalidationObserver = self
        installSignalHandlers()
        ready()

        let result = cfuse3_session_loop_mt(se, 0, options.maxIdleLoopThreads)

        for source in signalSources { source.cancel() }
        fileSystem.invalidationObserver = nil
        invalidations.sync {}
        lock.lock(); session = nil; lock.unlock()
        fuse_session_unmount(se)
        workers.stop()
        // libfuse returns the errno of the read that ended the loop; ENODEV (connection ended
        // by unmount) and a signal are the normal ends.
        if result != 0 && result != -ENODEV && result != -EINTR && result != SIGTERM && result != SIGINT && result != SIGHUP {
            throw MountError.loop(result)
        }
    }

    /// SIGINT/SIGTERM/SIGHUP: end the loop and unmount lazily. The loop threads sit in
    /// `read(/dev/fuse)`, which only the end of the connection interrupts, so the handler
    /// unmounts (like an external `fusermount3 -u`) rather than only setting the exit flag.
    private func installSignalHandlers() {
        let queue = DispatchQueue(label: "ncfs.fuse.signals")
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler { [weak self] in self?.stop() }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Ends the mount from any thread.
    public func stop() {
        lock.lock()
        if let se = session { fuse_session_exit(se) }
        lock.unlock()
        let unmount = Process()
        unmount.executableURL = URL(fileURLWithPath: "/bin/sh")
        unmount.arguments = ["-c", "exec fusermount3 -u -z \"$0\"", mountpoint]
        do {
            try unmount.run()
            unmount.waitUntilExit()
        } catch {
            logger.error("fusermount3 -u -z \(mountpoint) failed: \(error)")
        }
    }
}

extension FUSEMount: InvalidationObserver {
    public func invalidate(_ items: [Invalidation]) {
        invalidations.async { [self] in
            lock.lock()
            defer { lock.unlock() }
            guard let se = session else { return }
            for item in items {
                // ENOENT means the kernel holds nothing for it: nothing to drop.
                switch item {
                case .inode(let ino):
                    _ = fuse_lowlevel_notify_inval_inode(se, ino, 0, 0)
                case .entry(let parent, let name):
                    _ = name.withCString { fuse_lowlevel_notify_inval_entry(se, parent, $0, name.utf8.count) }
                }
            }
        }
    }
}
