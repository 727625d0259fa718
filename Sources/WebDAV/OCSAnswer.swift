import Foundation

/// Reads the JSON answers of Nextcloud's OCS API and `status.php`: the envelope, and the few
/// fields ncfs takes from each route.
///
/// Pure functions of the body, kept apart from the client that fetches it, so the hostile-input
/// fuzzer (`ncfs-fuzz`) drives exactly what production runs. Every field is typed on the way
/// in: a value of the wrong JSON type reads as absent, never as a cast failure or a trap, and a
/// number counts only when it is an exact integer (`1.5`, `1e300` or `true` are not a quota).
///
/// The envelope (reference §1.4), with `?format=json`:
/// ```json
/// {"ocs": {"meta": {"status": "ok", "statuscode": 200, "message": "OK"}, "data": …}}
/// ```
public enum OCSAnswer {
    /// OCS and status.php answers are a few KiB; capabilities of a server with many apps reach
    /// tens of KiB. The transport caps a memory body at 1 MiB already; this repeats the bound
    /// for callers (and the fuzzer) that hand over bytes from elsewhere.
    public static let maxBytes = 1 << 20

    /// `ocs.data`, or nil when the body is not an OCS JSON envelope (HTML login page, empty,
    /// truncated, XML, over `maxBytes`). `data` may be any JSON value, an empty PHP array
    /// arrives as `[]`.
    public static func data(_ body: [UInt8]) -> Any? {
        guard let root = jsonObject(body) as? [String: Any], let ocs = root["ocs"] as? [String: Any] else { return nil }
        return ocs["data"]
    }

    /// `cloud/user`: nil without a string `id`.
    public static func user(_ data: Any) -> OCSUser? {
        guard let fields = data as? [String: Any], let id = fields["id"] as? String, !id.isEmpty else { return nil }
        let quota = fields["quota"] as? [String: Any]
        return OCSUser(id: id, displayName: fields["display-name"] as? String ?? fields["displayname"] as? String,
                       quotaUsed: int64(quota?["used"]), quotaFree: int64(quota?["free"]))
    }

    /// `apps/files_sharing/api/v1/shares` (POST): nil without a non-empty string `token`.
    /// Nextcloud sends the share id as a number or, on older versions, as a string.
    public static func share(_ data: Any) -> PublicShare? {
        guard let fields = data as? [String: Any], let token = fields["token"] as? String, !token.isEmpty else { return nil }
        let id = (fields["id"] as? String) ?? int64(fields["id"]).map(String.init) ?? ""
        return PublicShare(id: id, token: token, url: fields["url"] as? String)
    }

    /// `apps/files_sharing/api/v1/shares` (GET): the link shares (`share_type` 3) with a
    /// token, in the answer's order; nil unless `data` is an array (Nextcloud sends `[]` for
    /// none). Shares of other kinds, or without a token, are left out.
    public static func linkShares(_ data: Any) -> [PublicShare]? {
        guard let list = data as? [Any] else { return nil }
        return list.compactMap { entry in
            guard let fields = entry as? [String: Any], int64(fields["share_type"]) == 3 else { return nil }
            return share(fields)
        }
    }

    /// `cloud/capabilities`: nil unless `data` is an object; missing parts take their defaults.
    public static func capabilities(_ data: Any) -> Capabilities? {
        guard let fields = data as? [String: Any] else { return nil }
        return Capabilities(json: fields)
    }

    /// `status.php`, which has no OCS envelope: nil unless every field is there with its type.
    public static func serverStatus(_ body: [UInt8]) -> ServerStatus? {
        guard body.count <= maxBytes else { return nil }
        return try? JSONDecoder().decode(ServerStatus.self, from: Data(body))
    }

    /// An exact integer in Int64's range, else nil. JSON has one number type, so `used: 1.5`,
    /// `free: 1e300` or `true` (which Foundation also hands out as an NSNumber) are refused
    /// here rather than rounded, saturated or read as 1.
    static func int64(_ value: Any?) -> Int64? {
        guard let number = value as? NSNumber, !isBoolean(number) else { return nil }
        return Int64(exactly: number)
    }

    /// JSONSerialization hands out `true`/`false` as NSNumbers of C type `char` ("c"); JSON
    /// integers come as "i", "q" or "Q" and never as a char.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        number.objCType.pointee == CChar(UInt8(ascii: "c"))
    }

    private static func jsonObject(_ body: [UInt8]) -> Any? {
        guard !body.isEmpty, body.count <= maxBytes else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(body))
    }
}
