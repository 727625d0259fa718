internal import CFuse3
import Foundation
public import FileSystem
import HTTPTransport
public import Logging

/// One FUSE mount of a FileSystem on the libfuse3 low-level API: the session, the loop
/// threads, the worker pool, signal handling and kernel cache invalidation.
///
/// Lifecycle: `run()` creates the session, mounts, reports readiness (sd_notify), runs the
/// multi-threaded loop until the kernel ends the connection (`fusermount3 -u`) or `stop()`
/// (the SIGINT/SIGTERM/SIGHUP handler) ends the loop, then unmounts (lazily: files still open
/// on the mount keep it alive for their holders, whose next access fails with ENOTCONN),
/// waits for the requests in flight and destroys the session. Only `run()`'s thread touches
/// the session pointer except for `fuse_lowlevel_notify_*` (allowed from any thread while the
/// session lives) and `fuse_session_exit` (an atomic flag).
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
        /// How long the unmount waits for requests still running on the workers.
        public var requestDrainTimeout: Double = 10
        /// The longest a request to the mount waits for the server's answers (listings,
        /// lookups, mkdir, rename, unlink, …) before it fails with EIO; an interrupt (a signal
        /// to the caller) ends the wait at once with EINTR. Transfers of whole files (opening
        /// an existing file for writing downloads it) are bounded by their stall timeout
        /// instead, and reads by `read_timeout`.
        public var requestTimeout: Double = 30
        public init() {}
    }

    let fileSystem: FileSystem
    let workers: WorkerPool
    public let mountpoint: String
    let options: Options
    let logger: Logger
    private let lock = NSLock()
    private var session: OpaquePointer?
    /// The thread running the loop (`run()`'s), while it does: `stop()` wakes it.
    private var loopThread: pthread_t?
    /// Requests handed to the worker pool and not yet answered; the session must outlive them.
    private let inFlight = NSCondition()
    private var inFlightCount = 0
    /// The cancellations of those requests (by identity), cancelled when the mount ends.
    private var inFlightCancellations: [ObjectIdentifier: Cancellation] = [:]
    /// The signal that ended the mount, if one did.
    public private(set) var stoppedBySignal: Int32?
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

    /// `stopping` runs (on a signal thread) when a signal ends the mount, before the unmount.
    public func run(ready: () -> Void = {}, stopping: @escaping @Sendable (Int32) -> Void = { _ in }) throws {
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
        // Destroyed on the way out, unless requests still running would answer through it.
        var destroy = true
        defer { if destroy { fuse_session_destroy(se) } }
        guard fuse_session_mount(se, mountpoint) == 0 else { throw MountError.mount(mountpoint) }
        lock.lock(); session = se; loopThread = pthread_self(); lock.unlock()
        fileSystem.invalidationObserver = self
        installSignalHandlers(stopping)
        ready()

        let result = cfuse3_session_loop_mt(se, 0, options.maxIdleLoopThreads)

        for source in signalSources { source.cancel() }
        fileSystem.invalidationObserver = nil
        invalidations.sync {}
        lock.lock(); session = nil; loopThread = nil; lock.unlock()
        // Unmounts (lazily, if still mounted: after `stop()`, or with files open on it) and
        // closes the device, which fails every request nobody will read now with ENOTCONN.
        fuse_session_unmount(se)
        // Requests still running on the workers answer into the closed device; the session
        // they name must live until they have. Their callers are gone (or get ENOTCONN), so
        // their server exchanges are cancelled: each ends within about a second. The wait is
        // bounded all the same.
        inFlight.lock()
        for cancellation in inFlightCancellations.values { cancellation.cancel() }
        let deadline = Date().addingTimeInterval(options.requestDrainTimeout)
        while inFlightCount > 0 && inFlight.wait(until: deadline) {}
        let stuck = inFlightCount
        inFlight.unlock()
        if stuck > 0 {
            // They answer into a closed device; the session (a few KiB) is left to the exit.
            destroy = false
            logger.warning("\(stuck) request(s) still running at unmount")
        }
        workers.stop()
        // libfuse returns the errno of the read that ended the loop; ENODEV (connection ended
        // by unmount) and a signal are the normal ends.
        if result != 0 && result != -ENODEV && result != -EINTR && result != SIGTERM && result != SIGINT && result != SIGHUP {
            throw MountError.loop(result)
        }
    }

    /// SIGINT/SIGTERM/SIGHUP end the loop (`stop()`); the unmount follows in `run()`.
    private func installSignalHandlers(_ stopping: @escaping @Sendable (Int32) -> Void) {
        // The wake-up signal only has to interrupt the loop thread's wait: a handler that does
        // nothing, installed without SA_RESTART.
        var wake = sigaction()
        wake.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&wake.sa_mask)
        wake.sa_flags = 0
        sigaction(FUSEMount.wakeSignal, &wake, nil)
        // This thread runs the loop: it must take the signal even if our parent blocked it
        // (a blocked mask is inherited; test runners block most signals).
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, FUSEMount.wakeSignal)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let queue = DispatchQueue(label: "ncfs.fuse.signals")
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                lock.lock()
                let first = stoppedBySignal == nil
                if first { stoppedBySignal = sig }
                lock.unlock()
                if first { stopping(sig) }
                stop()
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Interrupts the loop thread's wait (see `stop()`).
    static let wakeSignal = SIGUSR2

    /// Ends the mount from any thread: the loop ends, then `run()` unmounts. The loop's main
    /// thread waits in `sem_wait` for a worker to end, and its workers in `read(/dev/fuse)`,
    /// which nothing but a request or the end of the connection wakes; a signal to the main
    /// thread interrupts its wait, after which libfuse sees the exit flag and cancels the
    /// workers. (Unmounting here instead, as before, made libfuse's own unmount after the loop
    /// fail — "failed to unmount …: Invalid argument" — and left the loop waiting for as long
    /// as any program held a file open on the mount.) Repeated until the loop has ended: a
    /// signal that arrives just before the wait begins is lost.
    public func stop() {
        lock.lock()
        if let se = session { fuse_session_exit(se) }
        lock.unlock()
        while true {
            lock.lock()
            guard let thread = loopThread else { lock.unlock(); return }
            // Under `lock`: `run()` clears `loopThread` under it once the loop has returned,
            // so the thread is alive (it is `run()`'s own) whenever it is signalled.
            pthread_kill(thread, FUSEMount.wakeSignal)
            lock.unlock()
            usleep(50_000)
        }
    }

    /// A request handed to the worker pool: counted until it is answered.
    func requestStarted(_ cancellation: Cancellation) {
        inFlight.lock()
        inFlightCount += 1
        inFlightCancellations[ObjectIdentifier(cancellation)] = cancellation
        inFlight.unlock()
    }

    func requestEnded(_ cancellation: Cancellation) {
        inFlight.lock()
        inFlightCount -= 1
        inFlightCancellations[ObjectIdentifier(cancellation)] = nil
        if inFlightCount == 0 { inFlight.broadcast() }
        inFlight.unlock()
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
