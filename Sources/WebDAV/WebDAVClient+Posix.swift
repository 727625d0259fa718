import Foundation

extension WebDAVClient {
    /// Stores ncfs's dead property `{https://ncfs.invalid/ns}posix` on `path` (PROPPATCH), or
    /// removes it with nil. Nextcloud keeps dead properties per file, moves them with the file
    /// and drops them with it; other clients never look at them.
    public func setPosixProperty(_ path: String, _ value: String?) throws {
        let p = DAVLocation.normalize(path)
        let change = value.map { "<d:set><d:prop><ncfs:posix>\(xmlEscape($0))</ncfs:posix></d:prop></d:set>" }
            ?? "<d:remove><d:prop><ncfs:posix/></d:prop></d:remove>"
        let body = """
            <?xml version="1.0" encoding="utf-8"?>
            <d:propertyupdate xmlns:d="DAV:" xmlns:ncfs="\(PropertySet.ncfs)">\(change)</d:propertyupdate>
            """
        let result = try multistatus(method: "PROPPATCH", url: location.url(p), path: p, depth: nil, body: body, root: location.rootPath)
        if let failed = result.first?.failedProperties["{\(PropertySet.ncfs)}posix"] {
            throw DAVError(DAVError.kind(forStatus: failed, method: "PROPPATCH"), method: "PROPPATCH", path: p,
                           status: failed, detail: "the server refused to store the file's mode and owner")
        }
    }
}
