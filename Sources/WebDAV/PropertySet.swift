import Foundation

/// The properties a PROPFIND asks for. Always an explicit list: an empty body or `allprop`
/// makes Nextcloud compute quota for every folder in the listing.
public struct PropertySet: Sendable {
    /// `(namespace URI, local name)` pairs.
    public var properties: [(String, String)]

    public init(_ properties: [(String, String)]) { self.properties = properties }

    static let dav = "DAV:", oc = "http://owncloud.org/ns", nc = "http://nextcloud.org/ns"
    /// ncfs's own namespace for the dead properties it stores on the server (a file's POSIX
    /// mode and owner, the symbolic-link marker). `.invalid` is reserved (RFC 2606): the URI
    /// names no web page and can never be claimed by someone else; it must never change, or
    /// mounts stop seeing what older ones stored.
    public static let ncfs = "https://ncfs.invalid/ns"

    /// What one listing needs to answer readdir, lookup and getattr of every child
    /// (reference §2.5).
    public static let listing = PropertySet(serverListing.properties + [(ncfs, "posix")])

    /// The listing set without ncfs's dead property (SEARCH selects only the server's own).
    static let serverListing = PropertySet([
        (dav, "resourcetype"), (dav, "getetag"), (dav, "getlastmodified"), (dav, "getcontentlength"),
        (oc, "fileid"), (oc, "permissions"), (oc, "size"),
    ])

    /// The listing set plus quota (asked only on the mount root: quota is costly per folder).
    public static let withQuota = PropertySet(listing.properties + [(dav, "quota-used-bytes"), (dav, "quota-available-bytes")])

    /// The listing set plus `oc:checksums` (ingest: is the file on the server ours?).
    public static let withChecksums = PropertySet(listing.properties + [(oc, "checksums")])

    /// Only the ETag and size: what revalidation and `ncfs du` need.
    public static let etagAndSize = PropertySet([(dav, "resourcetype"), (dav, "getetag"), (oc, "size")])

    /// Trash bin listing.
    public static let trash = PropertySet(listing.properties + [
        (nc, "trashbin-filename"), (nc, "trashbin-original-location"), (nc, "trashbin-deletion-time"),
    ])

    var propfindBody: String {
        var s = #"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns" xmlns:ncfs="https://ncfs.invalid/ns"><d:prop>"#
        s += propElements
        s += "</d:prop></d:propfind>"
        return s
    }

    var propElements: String {
        properties.map { ns, name in
            let prefix = ns == PropertySet.dav ? "d" : ns == PropertySet.oc ? "oc" : ns == PropertySet.ncfs ? "ncfs" : "nc"
            return "<\(prefix):\(name)/>"
        }.joined()
    }
}
