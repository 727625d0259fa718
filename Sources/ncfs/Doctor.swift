import ArgumentParser
import Foundation
import HTTPTransport
import WebDAV

/// Checks a connection step by step the way a user needs it explained, stopping at the first
/// step that makes the later ones meaningless. Never retries (a 401 must not be repeated).
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check the connection: URL, TLS, credentials, WebDAV root, capabilities, maintenance, clock, cache space.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        var failures = 0
        func ok(_ s: String) { print("ok    \(s)") }
        func warn(_ s: String) { print("warn  \(s)") }
        func bad(_ s: String) { print("FAIL  \(s)"); failures += 1 }

        let client: WebDAVClient
        do {
            client = try makeClient(connection, retry: .noRetries)
            let resolved = try connection.resolve()
            ok("configuration: \(redactedForLog(resolved.baseURL)) as \(resolved.credentials?.user ?? "(anonymous)")")
            if resolved.credentials == nil { warn("no credentials configured: only public servers will answer") }
            if !resolved.verifyTLS { warn("TLS verification is OFF (--insecure)") }
        } catch {
            bad(explain(error).0)
            throw ExitCode(3)
        }
        let location = client.location

        // 1. Reachability, TLS, status.php, clock.
        if let prefix = location.installPrefix {
            let url = location.origin + DAVLocation.percentEncodePath(prefix + "/status.php")
            do {
                let response = try client.http.perform(HTTPRequest(method: "GET", url: url), retry: .noRetries)
                ok("server reachable (\(location.origin))\(location.origin.hasPrefix("https") ? ", TLS certificate valid" : " (plain HTTP: credentials travel unencrypted)")")
                if let date = response.headers["Date"].flatMap(parseHTTPDate) {
                    let skew = Date().timeIntervalSince(date)
                    if abs(skew) > 60 { warn(String(format: "clock differs from the server's by %.0f s: fix NTP (modification times and date paths depend on it)", skew)) }
                    else { ok(String(format: "clock within %.0f s of the server's", abs(skew))) }
                }
                if response.status == 200, let status = try? JSONDecoder().decode(ServerStatus.self, from: Data(response.body)) {
                    ok("\(status.productname) \(status.versionstring)")
                    if status.maintenance { bad("the server is in maintenance mode: wait for the admin to finish") }
                    if status.needsDbUpgrade { bad("the server needs a database upgrade (occ upgrade)") }
                } else {
                    warn("no Nextcloud status.php at \(prefix)/status.php (HTTP \(response.status)): treating it as a generic WebDAV server")
                }
            } catch let error as HTTPError {
                if error.isTLSVerification {
                    bad("TLS certificate not valid: \(error)\n      \(tlsAdvice(for: "\(error)"))")
                } else {
                    bad("cannot reach \(location.origin): \(error)")
                }
                throw ExitCode(7)
            }
        } else {
            warn("the URL is not a Nextcloud files URL (/remote.php/dav/files/<user>/): trash, chunked upload and folder sizes may be missing")
        }

        // 2. Credentials and the WebDAV root.
        do {
            let root = try client.stat("", properties: .withQuota)
            guard root.isCollection else { bad("the URL points at a file, not a folder"); throw ExitCode(1) }
            ok("credentials accepted, WebDAV folder found")
            if root.size == nil { warn("no oc:size: folder sizes will show as 0") }
            if let free = root.quotaAvailable {
                ok("quota: \(free < 0 ? "unlimited" : Format.size(free, human: true) + " free"), \(Format.size(root.quotaUsed, human: true)) used")
            }
        } catch let error as DAVError {
            switch error.kind {
            case .unauthorized:
                bad("credentials refused (HTTP 401). Use an app password created under Settings → Security → Devices & sessions; the account password does not work with two-factor authentication or when password logins are disabled\(error.server?.message.map { " (server: \($0))" } ?? "")")
            case .notFound:
                bad("no WebDAV folder at this URL (HTTP 404): check the user id in the URL (it can differ from the login name) and the folder path")
            default:
                bad("\(error)")
            }
            throw ExitCode(explain(error).1)
        } catch let error as HTTPError {
            bad("cannot reach the WebDAV folder: \(error)")
            throw ExitCode(7)
        }

        // 3. User id and capabilities (Nextcloud only).
        if location.isNextcloudLayout {
            do {
                let user = try client.currentUser()
                if user.id != location.userID {
                    warn("the URL names user '\(location.userID ?? "")' but the login belongs to '\(user.id)'")
                } else {
                    ok("user id \(user.id)")
                }
                let caps = try client.loadCapabilities()
                ok("capabilities read (Nextcloud \(caps.version)); chunked upload \(caps.chunking ? "available" : "not offered")")
                if caps.bruteforceDelayMs > 0 {
                    warn("the server throttles this address (\(caps.bruteforceDelayMs) ms per request) after failed logins")
                }
            } catch {
                warn("OCS API not usable: \(explain(error).0)")
            }
        }

        // 4. Local cache space.
        let cache = (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache")
        var fs = statvfs()
        var probe = cache
        while !FileManager.default.fileExists(atPath: probe), probe != "/" { probe = (probe as NSString).deletingLastPathComponent }
        if statvfs(probe, &fs) == 0 {
            let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
            if free < 1 << 30 { warn("only \(Format.size(free, human: true)) free for the cache at \(cache)") }
            else { ok("\(Format.size(free, human: true)) free for the cache at \(cache)") }
        }

        if failures > 0 { throw ExitCode(1) }
    }
}

/// RFC 1123 dates as in the `Date` header.
func parseHTTPDate(_ s: String) -> Date? {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "GMT")
    f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
    return f.date(from: s)
}
