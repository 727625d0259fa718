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

/// First contact: the mount point checked, the root listed, the one line that says the mount is ready.
extension Mount {
    /// Refuses what cannot be, or should not silently be, mounted on: a missing path, anything
    /// but a folder (a file as mount point turns every access into EIO), a folder already
    /// mounted on, and a folder with entries (the mount would hide them) unless `-o nonempty`.
    static func checkMountpoint(_ path: String, allowNonEmpty: Bool) throws {
        // An automount point (fstab's x-systemd.automount) is where this mount belongs, and
        // looking into it would wait for this very mount: taken as it is.
        let mounted = mountType(path)
        if mounted == "autofs" { return }
        var st = stat()
        guard stat(path, &st) == 0 else {
            let code = errno
            switch code {
            case ENOENT:
                throw CLIError(message: "the mount point \(path) does not exist: create an empty folder first (mkdir -p \(path))", code: 2)
            case ENOTCONN:
                throw CLIError(message: "the mount point \(path) is a mount whose daemon has ended (\(Errno(rawValue: code).description)): run `fusermount3 -u \(path)` first", code: 2)
            default:
                throw CLIError(message: "cannot use the mount point \(path): \(Errno(rawValue: code).description)", code: 2)
            }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            let kind = st.st_mode & S_IFMT == S_IFREG ? "a file" : "not a folder"
            throw CLIError(message: "the mount point \(path) is \(kind): ncfs mounts on an (empty) folder", code: 2)
        }
        if allowNonEmpty { return }
        if let type = mounted {
            throw CLIError(message: "\(path) is already a mount point (\(type)): unmount it first (fusermount3 -u \(path)), or mount elsewhere", code: 2)
        }
        guard let folder = opendir(path) else {
            throw CLIError(message: "cannot read the mount point \(path): \(Errno(rawValue: errno).description)", code: 2)
        }
        defer { closedir(folder) }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        if !names.isEmpty {
            let shown = names.sorted().prefix(3).joined(separator: ", ") + (names.count > 3 ? ", …" : "")
            throw CLIError(message: """
                the mount point \(path) is not empty (\(names.count) entr\(names.count == 1 ? "y" : "ies"): \(shown)); the mount would \
                hide what is in it. Mount on an empty folder, or pass -o nonempty to mount over it anyway.
                """, code: 2)
        }
    }

    /// The filesystem type of a mount exactly at `path`, from /proc/self/mountinfo (whose
    /// paths escape space, tab, newline and backslash as octal).
    static func mountType(_ path: String) -> String? {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        let escaped = path.replacingOccurrences(of: "\\", with: "\\134").replacingOccurrences(of: " ", with: "\\040")
            .replacingOccurrences(of: "\t", with: "\\011").replacingOccurrences(of: "\n", with: "\\012")
        var type: String?
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4] == Substring(escaped) else { continue }
            type = fields.firstIndex(of: "-").flatMap { fields.count > $0 + 1 ? String(fields[$0 + 1]) : nil } ?? "unknown type"
        }
        return type
    }

    /// Lists the root once before mounting: the server is reachable, the login works, and the
    /// URL names a WebDAV folder. A 404 there almost always means a wrong URL, which the
    /// bare "PROPFIND /: HTTP 404" does not say.
    static func checkRoot(_ cache: MetadataCache, url: String) throws {
        let shown = redactedForLog(url)
        let advice = """
            A Nextcloud WebDAV URL looks like https://HOST/remote.php/dav/files/USER/ (the Files app shows \
            yours under Files settings → WebDAV; a folder below it works too). `ncfs doctor` checks the \
            URL, the server and the login step by step.
            """
        let listing: FolderListing
        do {
            listing = try cache.listing("")
        } catch let error as DAVError where error.kind == .notFound {
            throw CLIError(message: "\(error)\nThe URL \(shown) does not point at a WebDAV folder (the server answered 404 Not Found). \(advice)",
                           code: 5)
        } catch let error as DAVError where error.kind == .server && [405, 501].contains(error.status ?? 0) {
            throw CLIError(message: "\(error)\nThe server at \(shown) does not speak WebDAV there (it refused PROPFIND). \(advice)",
                           code: 1)
        }
        guard listing.folder.isDirectory else {
            throw CLIError(message: "The URL \(shown) points at a file, not a folder: ncfs mounts a folder. \(advice)", code: 2)
        }
    }

    /// "ncfs: mounted URL (as LOGIN) on MOUNTPOINT, writable; state folder STATE": what a
    /// foreground mount prints once it is live.
    static func readyLine(_ setup: Setup) -> String {
        let login = setup.connection.credentials.map { " (as \($0.user))" } ?? ""
        let state = setup.writes.map { "writable; state folder \($0.directory.path)" } ?? "read-only (no state folder)"
        return "ncfs: mounted \(redactedForLog(setup.connection.baseURL))\(login) on \(setup.mountpoint), \(state); "
            + "unmount with `fusermount3 -u \(setup.mountpoint)` or Ctrl-C"
    }

    /// Removes, innermost first, the folders of `created` that are still empty.
    static func removeEmptyFolders(_ created: [URL]) {
        for folder in created.reversed() { rmdir(folder.path) }
    }
}
