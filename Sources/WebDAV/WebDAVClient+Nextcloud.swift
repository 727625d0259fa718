import Foundation
import HTTPTransport

/// The Nextcloud extras: trash bin, SEARCH, status.php and the OCS API. Each throws
/// `.unsupported` on a server without the Nextcloud URL layout.
extension WebDAVClient {
    // MARK: Trash bin (reference §5.1)

    func trashRoot() throws -> String {
        guard let prefix = location.installPrefix, let user = location.userID else {
            throw DAVError(.unsupported, method: "PROPFIND", path: "trash", detail: "the trash bin needs a Nextcloud server")
        }
        return "\(prefix)/remote.php/dav/trashbin/\(user)/"
    }

    /// Everything in the trash bin. `path` of each entry is the trash item name
    /// (`<name>.d<deletion time>`); `trash` holds the original name and location.
    public func trashList() throws -> [DAVResource] {
        let root = try trashRoot() + "trash/"
        let url = location.url(absolutePath: root)
        let all = try multistatus(method: "PROPFIND", url: url, path: "trash", depth: "1",
                                  body: PropertySet.trash.propfindBody, root: root)
        // Only the bin's direct entries: a deeper path is not an item restore or delete could name.
        return all.filter { !$0.path.isEmpty && !$0.path.utf8.contains(UInt8(ascii: "/")) }
    }

    /// Restores a trash item (by its trash name) to its original location.
    public func trashRestore(_ item: String) throws {
        let root = try trashRoot()
        var headers = HTTPHeaders()
        headers.set("Destination", location.url(absolutePath: root + "restore/" + item))
        let request = HTTPRequest(method: "MOVE", url: location.url(absolutePath: root + "trash/" + item),
                                  headers: headers, idempotent: false)
        try send(request, path: "trash/\(item)")
    }

    /// Deletes one trash item for good, or empties the whole bin when `item` is nil.
    public func trashDelete(_ item: String?) throws {
        let root = try trashRoot() + "trash" + (item.map { "/" + $0 } ?? "")
        try send(HTTPRequest(method: "DELETE", url: location.url(absolutePath: root)), path: "trash/\(item ?? "")")
    }

    // MARK: SEARCH (reference §7.4)

    /// Files and folders below `under` whose name matches `pattern` (SQL LIKE: `%` any run,
    /// `_` one character; case-insensitive on Nextcloud). Paths come back relative to the root.
    public func search(name pattern: String, under: String = "", limit: Int = 500) throws -> [DAVResource] {
        guard let filesRoot = location.filesRootPath, let user = location.userID, let prefix = location.installPrefix else {
            throw DAVError(.unsupported, method: "SEARCH", path: under, detail: "SEARCH needs a Nextcloud server")
        }
        let scope = location.filesRelative(under)
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <d:searchrequest xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
            <d:basicsearch><d:select><d:prop>\(PropertySet.serverListing.propElements)</d:prop></d:select>
            <d:from><d:scope><d:href>/files/\(xmlEscape(user))\(scope.isEmpty ? "" : "/" + xmlEscape(scope))</d:href><d:depth>infinity</d:depth></d:scope></d:from>
            <d:where><d:like><d:prop><d:displayname/></d:prop><d:literal>\(xmlEscape(pattern))</d:literal></d:like></d:where>
            <d:orderby/><d:limit><d:nresults>\(limit)</d:nresults></d:limit>
            </d:basicsearch></d:searchrequest>
            """
        var headers = HTTPHeaders()
        headers.set("Content-Type", "text/xml; charset=utf-8")
        // Results are relative to the files root; re-root them on the mount root.
        let results = try multistatus(method: "SEARCH", url: location.url(absolutePath: "\(prefix)/remote.php/dav/", collection: true),
                                      path: under, depth: nil, body: body, root: filesRoot, extraHeaders: headers)
        let sub = location.subPath
        return results.compactMap { r in
            var r = r
            if sub.isEmpty { return r }
            guard r.path == sub || r.path.hasPrefix(sub + "/") else { return nil }
            r.path = String(r.path.dropFirst(sub.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            return r
        }
    }

    // MARK: status.php and OCS (reference §1.3, §1.4, §6.1)

    /// `status.php`: installed, maintenance, version. Unauthenticated on Nextcloud.
    public func serverStatus() throws -> ServerStatus {
        guard let prefix = location.installPrefix else {
            throw DAVError(.unsupported, method: "GET", path: "status.php", detail: "not a Nextcloud URL")
        }
        let request = HTTPRequest(method: "GET", url: location.origin + DAVLocation.percentEncodePath(prefix + "/status.php"))
        let response = try send(request, path: "status.php")
        guard let status = OCSAnswer.serverStatus(response.body) else {
            throw DAVError(.protocolViolation, method: "GET", path: "status.php", detail: "not Nextcloud's status.php JSON")
        }
        return status
    }

    /// GET/POST on an OCS v2 route, returning `ocs.data`; `query` goes in the URL after
    /// `format=json`.
    func ocs(_ method: String, _ route: String, form: [(String, String)] = [], query: [(String, String)] = []) throws -> Any {
        guard let prefix = location.installPrefix else {
            throw DAVError(.unsupported, method: method, path: route, detail: "OCS needs a Nextcloud server")
        }
        var headers = HTTPHeaders()
        // Without this header OCS routes fail Nextcloud's CSRF check (HTTP 412).
        headers.set("OCS-APIRequest", "true")
        headers.set("Accept", "application/json")
        var body = HTTPRequestBody.empty
        if !form.isEmpty {
            headers.set("Content-Type", "application/x-www-form-urlencoded")
            body = .text(form.map { "\(formEncode($0.0))=\(formEncode($0.1))" }.joined(separator: "&"))
        }
        let url = location.origin + DAVLocation.percentEncodePath("\(prefix)/ocs/v2.php/\(route)") + "?format=json"
            + query.map { "&\(formEncode($0.0))=\(formEncode($0.1))" }.joined()
        let response = try send(HTTPRequest(method: method, url: url, headers: headers, body: body), path: route)
        guard let data = OCSAnswer.data(response.body) else {
            throw DAVError(.protocolViolation, method: method, path: route, detail: "not an OCS JSON answer")
        }
        return data
    }

    /// The signed-in user (`cloud/user`): the real user id, which can differ from the login name.
    public func currentUser() throws -> OCSUser {
        guard let user = OCSAnswer.user(try ocs("GET", "cloud/user")) else {
            throw DAVError(.protocolViolation, method: "GET", path: "cloud/user", detail: "no user id in the answer")
        }
        return user
    }

    /// Reads the capabilities and, from them, the server's name rules (which then apply to
    /// every later request of this client).
    @discardableResult
    public func loadCapabilities() throws -> Capabilities {
        guard let caps = OCSAnswer.capabilities(try ocs("GET", "cloud/capabilities")) else {
            throw DAVError(.protocolViolation, method: "GET", path: "cloud/capabilities", detail: "no data")
        }
        nameRules.value = caps.nameRules
        return caps
    }

    /// Creates a read-only public link share of `path` and returns its token.
    public func createPublicShare(_ path: String) throws -> PublicShare {
        let relative = "/" + location.filesRelative(path)
        let data = try ocs("POST", "apps/files_sharing/api/v1/shares", form: [("path", relative), ("shareType", "3")])
        guard let share = OCSAnswer.share(data) else {
            throw DAVError(.protocolViolation, method: "POST", path: "shares", detail: "no share token in the answer")
        }
        return share
    }

    /// The public link shares of `path` this user made (`GET shares?path=…&reshares=false`,
    /// links only: `share_type` 3). A folder's links, not those of the entries below it.
    public func publicShares(of path: String) throws -> [PublicShare] {
        let relative = "/" + location.filesRelative(path)
        let data = try ocs("GET", "apps/files_sharing/api/v1/shares", query: [("path", relative), ("reshares", "false")])
        guard let shares = OCSAnswer.linkShares(data) else {
            throw DAVError(.protocolViolation, method: "GET", path: "shares", detail: "the answer is not a list of shares")
        }
        return shares
    }
}

public struct ServerStatus: Sendable, Decodable {
    public var installed: Bool
    public var maintenance: Bool
    public var needsDbUpgrade: Bool
    public var version: String
    public var versionstring: String
    public var productname: String
}

public struct OCSUser: Sendable {
    public var id: String
    public var displayName: String?
    public var quotaUsed: Int64?
    public var quotaFree: Int64?
}

public struct PublicShare: Sendable {
    public var id: String
    public var token: String
    public var url: String?

    public init(id: String, token: String, url: String?) {
        self.id = id
        self.token = token
        self.url = url
    }
}

/// The capabilities ncfs uses.
public struct Capabilities: Sendable {
    public var version: String
    public var chunking: Bool
    /// `dav.bulkupload` (present when the server's `bulkupload.enabled` is on, the default).
    public var bulkUpload: Bool
    public var nameRules: NameRules
    /// `bruteforce.delay` in ms: non-zero means this client's address is being throttled.
    public var bruteforceDelayMs: Int

    init(json: [String: Any]) {
        let version = json["version"] as? [String: Any]
        self.version = version?["string"] as? String ?? "unknown"
        let caps = json["capabilities"] as? [String: Any] ?? [:]
        let dav = caps["dav"] as? [String: Any] ?? [:]
        chunking = (dav["chunking"] as? String).map { !$0.isEmpty } ?? false
        bulkUpload = (dav["bulkupload"] as? String).map { !$0.isEmpty } ?? false
        let files = caps["files"] as? [String: Any] ?? [:]
        var rules = NameRules()
        if let names = files["forbidden_filenames"] as? [String] { rules.forbiddenNames = Set(names.map { $0.lowercased() }) }
        if let legacy = files["blacklisted_files"] as? [String] { rules.forbiddenNames.formUnion(legacy.map { $0.lowercased() }) }
        if let bases = files["forbidden_filename_basenames"] as? [String] { rules.forbiddenBasenames = Set(bases.map { $0.lowercased() }) }
        if let chars = files["forbidden_filename_characters"] as? [String] { rules.forbiddenCharacters = chars }
        if let exts = files["forbidden_filename_extensions"] as? [String] { rules.forbiddenExtensions = exts }
        // ".part" is refused by the server whatever the configuration says (reference §8.1).
        if !rules.forbiddenExtensions.contains(where: { $0.lowercased() == ".part" }) { rules.forbiddenExtensions.append(".part") }
        nameRules = rules
        // A negative or non-integral delay is not a throttle.
        bruteforceDelayMs = OCSAnswer.int64((caps["bruteforce"] as? [String: Any])?["delay"]).map { Int(clamping: max(0, $0)) } ?? 0
    }
}

func xmlEscape(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}

func formEncode(_ s: String) -> String {
    // ASCII only: `CharacterSet.alphanumerics` would let non-ASCII letters through unencoded.
    let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
}
