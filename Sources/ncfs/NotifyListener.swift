import Foundation
import SystemPackage

/// The receiving end of sd_notify(3), for `ncfs mount --background`: the parent plays the
/// service manager for the daemon it starts, so the daemon reports "mounted" (`READY=1`) and
/// its fatal error (`STATUS=…`) exactly as it does under systemd, with no second channel.
///
/// The socket lives in a fresh 0700 folder (mkdtemp), so only this user (and root) can send to
/// it: nobody else can fake a readiness or an error message. An abstract socket would need no
/// folder but would accept datagrams from every local user.
final class NotifyListener {
    /// The value for the daemon's `NOTIFY_SOCKET`.
    let path: String
    private let folder: String
    private let fd: Int32

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Binds a datagram socket under `$XDG_RUNTIME_DIR` (the per-user folder meant for
    /// sockets), else /tmp.
    init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let base = environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/ncfs-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Failure(description: "cannot create a folder in \(base): \(Errno(rawValue: errno).description)")
        }
        folder = String(cString: created)
        path = folder + "/notify"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard fd >= 0, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            let why = fd < 0 ? Errno(rawValue: errno).description : "path too long"
            remove()
            throw Failure(description: "cannot create the socket \(path): \(why)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let why = Errno(rawValue: errno).description
            remove()
            throw Failure(description: "cannot bind \(path): \(why)")
        }
    }

    /// The `KEY=VALUE` assignments of every datagram that arrives within `timeout` seconds
    /// (the first one ends the wait), in order.
    func receive(timeout: Double) -> [(key: String, value: String)] {
        var assignments: [(key: String, value: String)] = []
        var waitMilliseconds = Int32(timeout * 1000)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var pending = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pending, 1, waitMilliseconds) > 0 else { return assignments }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { return assignments }
            for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                assignments.append((String(line[..<eq]), String(line[line.index(after: eq)...])))
            }
            waitMilliseconds = 0
        }
    }

    /// Closes the socket and removes it with its folder.
    func remove() {
        if fd >= 0 { close(fd) }
        unlink(path)
        rmdir(folder)
    }
}
