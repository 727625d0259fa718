import ArgumentParser
import Foundation
import HTTPTransport
import SystemPackage

/// Where the connection settings come from, highest priority first: command-line flags, the
/// environment (the names pindeck deployments already use), then a config file of
/// `NAME=value` lines. Secrets never come from argv: a password is read from the environment,
/// a file (`--password-file`, `NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE`, systemd's
/// `$CREDENTIALS_DIRECTORY/nextcloud-app-password`) or the config file, and any file holding
/// one must not be readable by group or others.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "WebDAV URL, e.g. https://cloud.example.com/remote.php/dav/files/alice/ (env NEXTCLOUD_WEBDAV_BASE_URL).")
    var url: String?

    @Option(name: .long, help: "Login name (env NEXTCLOUD_WEBDAV_USER).")
    var user: String?

    @Option(name: .long, help: "File holding the app password (env NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE). Must not be readable by group/others.")
    var passwordFile: String?

    @Option(name: .long, help: "Config file of NAME=value lines (default: $XDG_CONFIG_HOME/ncfs/ncfs.conf).")
    var config: String?

    @Flag(name: .long, help: "Do not verify TLS certificates or host names (prints a warning; only for test servers you control — for a private CA use --ca-file).")
    var insecure = false

    @Option(name: .long, help: "PEM file of CA certificates to trust, e.g. your private or self-signed CA (it replaces libcurl's default CA bundle).")
    var caFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "Refuse a server whose public key is not this one (env NCFS_PINNED_PUBLIC_KEY), on top of certificate checks.",
        discussion: "sha256//BASE64 of the key's SubjectPublicKeyInfo; several joined with ';' (the current key and the next). "
            + "Get it with: openssl x509 -in CERT.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        valueName: "sha256//HASH"))
    var pinnedPublicKey: String?

    @Flag(name: [.short, .long], help: "Log every request (credentials are never logged).")
    var verbose = false
}

/// `--insecure` is never the default and never quiet: a command that resolves its connection
/// with it says so on stderr (a mount daemon into its log), once per process, so a forgotten
/// flag in a unit file or script shows. (A global: Swift runs its initialiser exactly once.)
private let insecureWarning: Void = {
    FileHandle.standardError.write(Data("""
        ncfs: WARNING: --insecure: TLS certificates and host names are NOT verified. Anyone between \
        you and the server can read and change your files and see your app password. For a private \
        or self-signed CA, pass its certificate with --ca-file CA.pem instead.

        """.utf8))
}()

/// Config files already warned about, so a file read twice in one run (connection and ingest
/// settings) warns once.
private final class ConfigWarnings: @unchecked Sendable {
    // @unchecked: `warned` is guarded by `lock`.
    private let lock = NSLock()
    private var warned: Set<String> = []

    func firstTime(_ path: String) -> Bool { lock.withLock { warned.insert(path).inserted } }
}

private let configWarnings = ConfigWarnings()

struct ResolvedConnection {
    var baseURL: String
    var credentials: Credentials?
    var verifyTLS: Bool
    var caFile: String?
    var pinnedPublicKey: String?
    var values: [String: String]
}

enum ConfigurationError: Error, CustomStringConvertible {
    case missing(String)
    case unsafePasswordFile(String, mode: mode_t)
    case unreadable(String, String)
    case badPin(String)

    var description: String {
        switch self {
        case .missing(let what):
            return "no \(what) configured: pass it as a flag, set the environment variable, or put it in the config file (see `ncfs --help`)"
        case .unsafePasswordFile(let path, let mode):
            return "\(path) is readable by other users (mode \(String(mode & 0o777, radix: 8))); run `chmod 600 \(path)` first"
        case .unreadable(let path, let why):
            return "cannot read \(path): \(why)"
        case .badPin(let item):
            return "--pinned-public-key: \"\(item)\" is not sha256// followed by the base64 of a 32-byte hash (several are joined with ';')"
        }
    }
}

/// Where a setting comes from, highest priority first: its flag, the environment, the config
/// file (`--config`, which must exist when given, else the default path if it exists).
struct SettingSources {
    let environment: [String: String]
    let file: [String: String]

    init(config: String?, environment: [String: String]) throws {
        let configPath = config ?? ConnectionOptions.defaultConfigPath
        if FileManager.default.fileExists(atPath: configPath) {
            file = try ConnectionOptions.readConfigFile(configPath)
        } else if config != nil {
            throw ConfigurationError.unreadable(configPath, "no such file")
        } else {
            file = [:]
        }
        self.environment = environment
    }

    func value(_ flag: String?, _ name: String) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let v = environment[name], !v.isEmpty { return v }
        return file[name]
    }
}

extension ConnectionOptions {
    static var defaultConfigPath: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.config")
        return base + "/ncfs/ncfs.conf"
    }

    func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ResolvedConnection {
        let sources = try SettingSources(config: config, environment: environment)
        let file = sources.file
        let value = sources.value
        guard let url = value(url, "NEXTCLOUD_WEBDAV_BASE_URL") else { throw ConfigurationError.missing("WebDAV URL (--url / NEXTCLOUD_WEBDAV_BASE_URL)") }
        let login = value(user, "NEXTCLOUD_WEBDAV_USER")

        var password: String?
        if let path = passwordFile ?? environment["NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            password = try ConnectionOptions.readSecretFile(path)
        } else if let p = environment["NEXTCLOUD_WEBDAV_APP_PASSWORD"], !p.isEmpty {
            password = p
        } else if let dir = environment["CREDENTIALS_DIRECTORY"], FileManager.default.fileExists(atPath: dir + "/nextcloud-app-password") {
            password = try ConnectionOptions.readSecretFile(dir + "/nextcloud-app-password")
        } else if let p = file["NEXTCLOUD_WEBDAV_APP_PASSWORD"] {
            password = p
        } else if let path = file["NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE"] {
            password = try ConnectionOptions.readSecretFile(path)
        }
        var values = file
        for (k, v) in environment where k.hasPrefix("NEXTCLOUD_") || k.hasPrefix("NCFS_") { values[k] = v }
        let credentials: Credentials?
        switch (login, password) {
        case let (l?, p?): credentials = Credentials(user: l, password: p)
        case (nil, nil): credentials = nil
        case (nil, _?): throw ConfigurationError.missing("user (--user / NEXTCLOUD_WEBDAV_USER)")
        case (_?, nil): throw ConfigurationError.missing("app password (NEXTCLOUD_WEBDAV_APP_PASSWORD or a password file)")
        }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            // libcurl would only say "problem with the SSL CA cert (path? access rights?)".
            throw ConfigurationError.unreadable(caFile, "the --ca-file does not exist or is not readable")
        }
        let pin = pinnedPublicKey ?? values["NCFS_PINNED_PUBLIC_KEY"]
        if let pin { try Self.checkPin(pin) }
        if insecure { _ = insecureWarning }
        return ResolvedConnection(baseURL: url, credentials: credentials, verifyTLS: !insecure,
                                  caFile: caFile, pinnedPublicKey: pin, values: values)
    }

    /// A pin list libcurl takes: `sha256//` and the base64 of 32 bytes, `;` between several.
    /// (libcurl would otherwise fail every request with only "SSL: public key does not match".)
    static func checkPin(_ pin: String) throws {
        for part in pin.split(separator: ";", omittingEmptySubsequences: false) {
            let item = part.trimmingCharacters(in: .whitespaces)
            guard item.hasPrefix("sha256//"), let hash = Data(base64Encoded: String(item.dropFirst(8))), hash.count == 32 else {
                throw ConfigurationError.badPin(String(item))
            }
        }
    }

    /// Reads a secret, refusing files that group or others can read.
    static func readSecretFile(_ path: String) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ConfigurationError.unreadable(path, Errno(rawValue: errno).description) }
        if st.st_mode & 0o077 != 0 { throw ConfigurationError.unsafePasswordFile(path, mode: st.st_mode) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError.unreadable(path, "not UTF-8 text")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `NAME=value` lines; `#` starts a comment; values may be quoted. A file that holds a
    /// password must be private, like a password file.
    static func readConfigFile(_ path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError.unreadable(path, "not readable UTF-8 text")
        }
        var out: [String: String] = [:]
        var unknown: [(line: Int, key: String)] = []
        for (number, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            if !knownConfigKeys.contains(key) { unknown.append((number + 1, key)) }
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let f = value.first, f == "\"" || f == "'", value.last == f {
                value = String(value.dropFirst().dropLast())
            }
            out[key] = value
        }
        if out["NEXTCLOUD_WEBDAV_APP_PASSWORD"] != nil {
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o077 != 0 { throw ConfigurationError.unsafePasswordFile(path, mode: st.st_mode) }
        }
        if !unknown.isEmpty, configWarnings.firstTime(path) {
            for (line, key) in unknown { FileHandle.standardError.write(Data("ncfs: warning: \(unknownKeyWarning(key, path: path, line: line))\n".utf8)) }
        }
        return out
    }

    /// Every key the config file may hold; any other is a mistake the user should hear about.
    static let knownConfigKeys: [String] = [
        "NEXTCLOUD_WEBDAV_BASE_URL", "NEXTCLOUD_WEBDAV_USER", "NEXTCLOUD_WEBDAV_APP_PASSWORD",
        "NEXTCLOUD_WEBDAV_APP_PASSWORD_FILE", "NCFS_PINNED_PUBLIC_KEY", "NEXTCLOUD_UPLOAD_PREFIX", "NCFS_TIME_ZONE",
        "NEXTCLOUD_PUBLIC_SHARE_TOKEN", "NEXTCLOUD_PUBLIC_BASE_URL", "NEXTCLOUD_PUBLIC_SHARE_PATH",
    ]

    /// "FILE:LINE: unknown setting KEY (ignored); did you mean NEAREST?" — the nearest known
    /// key, named when it is close enough to be the likely intent, else the list of known
    /// keys. (A misspelt key is otherwise ignored without a word, and the failure it causes —
    /// "no WebDAV URL configured" — points elsewhere.)
    static func unknownKeyWarning(_ key: String, path: String, line: Int) -> String {
        let prefix = "\(path):\(line): unknown setting \(key) (ignored)"
        if let nearest = nearestConfigKey(key) { return prefix + "; did you mean \(nearest)?" }
        return prefix + "; the known settings are " + knownConfigKeys.joined(separator: ", ")
    }

    /// The known key sharing the most `_`-separated words with `key`, the smallest edit
    /// distance among those: NEXTCLOUD_WEBDAV_URL is NEXTCLOUD_WEBDAV_BASE_URL (all three words),
    /// not NEXTCLOUD_WEBDAV_USER (fewer edits, one word fewer); NEXTCLOUD_WEBDAV_UESR is
    /// NEXTCLOUD_WEBDAV_USER. nil when nothing is close (two words in common, or a few edits).
    static func nearestConfigKey(_ key: String) -> String? {
        let upper = key.uppercased()
        let words = Set(upper.split(separator: "_"))
        let ranked = knownConfigKeys.map { known in
            (key: known, shared: words.intersection(known.split(separator: "_")).count, distance: editDistance(upper, known))
        }.min { ($1.shared, $0.distance) < ($0.shared, $1.distance) }
        guard let best = ranked, best.shared >= 2 || best.distance <= max(3, best.key.count / 3) else { return nil }
        return best.key
    }

    /// Levenshtein distance (insertions, deletions, substitutions), on Unicode scalars.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
