public import WebDAV

/// What ingest asks beyond the file system's seam (`IngestStore`), answered as Nextcloud 32
/// and the emulator (`scripts/testserver/nchandler.py`, `ocs_create_share`) answer it.
extension MemoryStore: IngestStore {
    /// Share tokens: 15 characters of the alphabet Nextcloud's `ISecureRandom` tokens use
    /// (no characters that read alike: no 0/O, 1/l/I, h, u, v).
    static let tokenCharacters = Array("abcdefgijkmnopqrstwxyzABCDEFGHJKLMNPQRSTWXYZ23456789")

    /// A new read-only link share each call (Nextcloud keeps several links per file). The
    /// answer's `url` is `<origin>/index.php/s/<token>`; a missing path is the OCS 404
    /// "Wrong path, file/folder does not exist".
    public func createPublicShare(_ path: String) throws -> PublicShare {
        let p = DAVLocation.normalize(path)
        return try call(.createPublicShare, method: "POST", path: "apps/files_sharing/api/v1/shares") {
            guard let node = shared.node(p) else {
                throw DAVError(.notFound, method: "POST", path: "apps/files_sharing/api/v1/shares", status: 404,
                               detail: "Wrong path, file/folder does not exist")
            }
            var token = ""
            repeat {
                token = String((0..<15).map { _ in Self.tokenCharacters.randomElement()! })
            } while shared.shares[token] != nil
            let id = shared.nextShareID
            shared.nextShareID += 1
            shared.shares[token] = (id, node.fileID)
            return PublicShare(id: String(id), token: token, url: location.origin + "/index.php/s/" + token)
        }
    }

    /// The links of the entry at `path`, oldest first; a missing path is the OCS 404.
    public func publicShares(of path: String) throws -> [PublicShare] {
        let p = DAVLocation.normalize(path)
        return try call(.publicShares, method: "GET", path: "apps/files_sharing/api/v1/shares") {
            guard let node = shared.node(p) else {
                throw DAVError(.notFound, method: "GET", path: "apps/files_sharing/api/v1/shares", status: 404,
                               detail: "Wrong path, file/folder does not exist")
            }
            return shared.shares.filter { $0.value.fileID == node.fileID }.sorted { $0.value.id < $1.value.id }.map {
                PublicShare(id: String($0.value.id), token: $0.key, url: location.origin + "/index.php/s/" + $0.key)
            }
        }
    }

    /// A GET into a file sink, as the client's download is (counted and faulted as a `get`).
    public func download(_ path: String, to localPath: String, progress: ((Int64, Int64) -> Void)?) throws {
        _ = try get(path, range: nil, ifMatch: nil, sink: .file(path: localPath), progress: progress)
    }
}
