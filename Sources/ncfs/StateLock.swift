import Foundation
import SystemPackage

/// One mount daemon per state folder. Two daemons on one folder would share the upload journal,
/// the catalog and the staged files of `incoming/`, and each would work the other's items (an
/// item derived from a file the other had already removed, the same content stored twice).
///
/// The daemon holds an exclusive `flock` on `<state>/mount.lock` for its whole life; the
/// kernel drops it when the process ends in any way (`kill -9` included), so a stale file never
/// blocks a later mount. The file names the holder (its pid and mount point) for the message a
/// second mount prints. Commands that only read the state (`ncfs status`, `ncfs items`) never
/// take the lock, so they work beside a running daemon.
final class StateLock {
    static let fileName = "mount.lock"

    let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock of `folder` for the daemon mounting on `mountpoint`, or throws the
    /// message naming the daemon that holds it.
    static func acquire(folder: URL, mountpoint: String) throws -> StateLock {
        let path = folder.appendingPathComponent(fileName).path
        // A daemon that ends removes the file while it still holds the lock, so one opened just
        // before that removal is locked but no longer at `path`: open again (a few rounds at
        // most, unless daemons keep starting and stopping on this folder).
        for _ in 0..<10 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else {
                throw CLIError(message: "cannot open the lock file \(path): \(Errno(rawValue: errno).description)", code: 1)
            }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let code = errno
                let holder = code == EWOULDBLOCK ? readHolder(fd) : [:]
                close(fd)
                if code == EWOULDBLOCK { throw CLIError(message: busyMessage(folder: folder, holder: holder), code: 1) }
                throw CLIError(message: "cannot lock \(path): \(Errno(rawValue: code).description)", code: 1)
            }
            var held = stat(), current = stat()
            if fstat(fd, &held) == 0, stat(path, &current) == 0, held.st_dev == current.st_dev, held.st_ino == current.st_ino {
                let text = "pid=\(getpid())\nmountpoint=\(mountpoint)\n"
                guard ftruncate(fd, 0) == 0, pwrite(fd, text, text.utf8.count, 0) == text.utf8.count else {
                    let reason = Errno(rawValue: errno).description
                    close(fd)
                    throw CLIError(message: "cannot write the lock file \(path): \(reason)", code: 1)
                }
                return StateLock(path: path, fd: fd)
            }
            close(fd)
        }
        throw CLIError(message: "cannot lock \(path): other mounts keep starting and stopping on this state folder", code: 1)
    }

    /// Removes the file (while still holding the lock, so no other daemon can have locked it)
    /// and lets the lock go. A failed mount thereby leaves its state folder as it found it.
    func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }

    /// The holder's `pid=` and `mountpoint=` lines. It writes them just after locking, so an
    /// empty file is read again for a moment.
    private static func readHolder(_ fd: Int32) -> [String: String] {
        for attempt in 0..<10 {
            var buffer = [UInt8](repeating: 0, count: 8192)
            let n = pread(fd, &buffer, buffer.count, 0)
            if n > 0 {
                var fields: [String: String] = [:]
                for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") {
                    guard let eq = line.firstIndex(of: "=") else { continue }
                    fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
                }
                return fields
            }
            if attempt < 9 { usleep(50_000) }
        }
        return [:]
    }

    static func busyMessage(folder: URL, holder: [String: String]) -> String {
        var who = "another ncfs mount"
        switch (holder["pid"], holder["mountpoint"]) {
        case let (pid?, mountpoint?): who += " (pid \(pid), mounted on \(mountpoint))"
        case let (pid?, nil): who += " (pid \(pid))"
        default: break
        }
        let unmount = holder["mountpoint"].map { " (fusermount3 -u \($0))" } ?? ""
        return """
            \(who) is already using the state folder \(folder.path). One state folder serves one mount at a time: \
            its upload journal, ingest catalog and incoming/ files cannot be shared. Unmount the other first\(unmount), \
            or, to run two mounts of the same URL and login, give this one a state folder of its own, and a cache \
            folder too: --state-dir DIR --cache-dir DIR (or -o state_dir=DIR,cache_dir=DIR).
            """
    }
}
