import Foundation

/// The `-o` options of `ncfs mount`, split into ncfs's own settings, the options mount(8) and
/// fstab add that mean nothing to a FUSE filesystem, and the rest, which go to libfuse.
///
/// fstab has no other place for settings, so connection settings are options too. A password
/// never is: `-o` values end up in `ps`, `/proc/PID/cmdline` and a world-readable `/etc/fstab`,
/// so `password=` is refused and `password_file=` names a file that must be private.
struct MountOptions {
    var poll: Double?
    var attrTimeout: Double?
    var readTimeout: Double?
    var zeroFolderSizes: Bool?
    /// Subfolders listed ahead of a tree walk (`walk_ahead=N`, 0 = off).
    var walkAhead: Int?
    /// The login from `user=LOGIN`, or `username=LOGIN`, which wins: for an fstab line with
    /// the `user` flag, mount(8) run by an ordinary user turns that flag into `user=<their
    /// Unix name>`, so such lines need the other spelling.
    var login: String?
    var passwordFile: String?
    var config: String?
    var cacheDirectory: String?
    var cacheSize: Int64?
    /// `whole_file_max=SIZE`: a file read at random up to this size is fetched whole (0: never).
    var wholeFileMax: Int64?
    var stateDirectory: String?
    /// `ro`: a read-only mount (writes fail with EROFS; no journal is opened).
    var readOnly = false
    var uploadDelay: Double?
    /// `close=crashsafe` (true, the default) or `close=durable` (false).
    var crashSafeClose: Bool?
    /// `bulk=on|off`: small files in bulk requests where the server offers them (default on).
    var bulkUpload: Bool?
    var drainTimeout: Double?
    /// The ingest folder's name (`incoming=NAME`), or none at all (`noincoming`).
    var incoming: String?
    var noIncoming = false
    var uploadPrefix: String?
    var ingestDelay: Double?
    /// Where `--background` sends the daemon's messages.
    var log: String?
    /// `nonempty`: mount over a folder that has entries (hiding them). ncfs's own option:
    /// libfuse 3 dropped it and would refuse it.
    var nonEmpty = false
    /// Owner and mode bits of files that have none stored (`uid=`, `gid=`, `umask=` in octal).
    var uid: UInt32?
    var gid: UInt32?
    var umask: UInt32?
    var fuse: [String] = []

    /// Options mount(8) (fstab) passes that mean nothing here: mount(8)'s own bookkeeping; the
    /// defaults it adds by itself (`rw,exec,suid,dev`), which must not undo the `nosuid,nodev`
    /// the mount always has; and access-time and other flags of disk filesystems, most of which
    /// libfuse would reject ("unknown option"). `noexec` is not here: libfuse applies it, and
    /// `ro` neither: it makes the mount read-only.
    static let ignored: Set<String> = [
        "rw", "dev", "nodev", "suid", "nosuid", "exec", "auto", "noauto", "_netdev",
        "nofail", "user", "users", "nouser", "owner", "group", "defaults",
        "atime", "noatime", "relatime", "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime",
        "lazytime", "nolazytime", "iversion", "noiversion", "mand", "nomand", "silent", "loud",
    ]

    /// `x-…` options (`x-systemd.automount`, `x-gvfs-show`, …) belong to other programs that read
    /// fstab; `X-…` are their variants kept in mount(8)'s utab.
    static func isIgnored(_ key: String) -> Bool {
        ignored.contains(key) || key == "comment" || key.hasPrefix("x-") || key.hasPrefix("X-")
    }

    /// Parses `-o` arguments, each a comma-separated list; empty items are skipped.
    init(parsing arguments: [String]) throws {
        var user: String?, username: String?
        for option in arguments.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0], value = parts.count > 1 ? parts[1] : nil
            func usage(_ message: String) -> CLIError { CLIError(message: "-o \(key): \(message)", code: 2) }
            func text() throws -> String {
                guard let value, !value.isEmpty else { throw usage("expected \(key)=VALUE") }
                return value
            }
            func seconds() throws -> Double {
                guard let n = Double(try text()), n >= 0 else { throw usage("expected a number of seconds") }
                return n
            }
            switch key {
            case "poll": poll = try seconds()
            case "attr_timeout": attrTimeout = try seconds()
            case "read_timeout": readTimeout = try seconds()
            case "dirsize":
                guard value == "zero" || value == "recursive" else { throw usage("takes zero or recursive") }
                zeroFolderSizes = value == "zero"
            case "walk_ahead":
                guard let n = Int(try text()), (0...64).contains(n) else { throw usage("expected a number of folders from 0 to 64") }
                walkAhead = n
            case "password":
                throw usage("""
                    refused: mount options are visible to every local user (ps, /proc, /etc/fstab). \
                    Put the app password in a file only you can read (chmod 600) and pass -o password_file=PATH.
                    """)
            case "user" where value != nil: user = try text()
            case "username": username = try text()
            case "password_file": passwordFile = try text()
            case "config": config = try text()
            case "cache_dir": cacheDirectory = try text()
            case "cache_size":
                guard let size = MountOptions.size(try text()) else { throw usage("expected a size such as 512M or 10G") }
                cacheSize = size
            case "whole_file_max":
                guard let size = MountOptions.size(try text()) else { throw usage("expected a size such as 256M (0: never)") }
                wholeFileMax = size
            case "log": log = try text()
            case "state_dir": stateDirectory = try text()
            case "ro": readOnly = true
            case "upload_delay": uploadDelay = try seconds()
            case "close":
                guard value == "durable" || value == "crashsafe" else { throw usage("takes durable or crashsafe") }
                crashSafeClose = value == "crashsafe"
            case "bulk":
                guard value == "on" || value == "off" else { throw usage("takes on or off") }
                bulkUpload = value == "on"
            case "drain_timeout": drainTimeout = try seconds()
            case "incoming": incoming = try text()
            case "noincoming": noIncoming = true
            case "upload_prefix": uploadPrefix = try text()
            case "ingest_delay": ingestDelay = try seconds()
            case "nonempty": nonEmpty = true
            case "uid", "gid":
                guard let id = UInt32(try text()) else { throw usage("expected a numeric id") }
                if key == "uid" { uid = id } else { gid = id }
            case "umask":
                guard let mask = UInt32(try text(), radix: 8), mask <= 0o777 else { throw usage("expected octal mode bits such as 022") }
                umask = mask
            case _ where MountOptions.isIgnored(key): continue
            default: fuse.append(option)
            }
        }
        login = username ?? user
    }

    /// Bytes from `N` or `N` followed by K, M, G or T (powers of 1024, any case, an optional
    /// trailing `B` or `iB`): `512M`, `1.5G`, `10GiB`. nil when malformed or beyond Int64.
    static func size(_ text: String) -> Int64? {
        var digits = Substring(text.trimmingCharacters(in: .whitespaces))
        for suffix in ["iB", "ib", "B", "b"] where digits.hasSuffix(suffix) {
            digits = digits.dropLast(suffix.count)
            break
        }
        var multiplier: Double = 1
        if let unit = digits.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][unit.uppercased()] {
            multiplier = pow(1024, Double(power))
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let number = Double(digits) else { return nil }
        let bytes = (number * multiplier).rounded(.down)
        return bytes < 0x1p63 ? Int64(bytes) : nil
    }
}
