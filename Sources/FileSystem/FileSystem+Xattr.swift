import RemoteCache

extension FileSystem {
    /// The server properties offered as read-only extended attributes.
    public static let xattrNames = ["user.nextcloud.fileid", "user.nextcloud.etag", "user.nextcloud.permissions", "user.nextcloud.size"]
    /// Files in incoming/ carry the pipeline's view of them instead (`user.ncfs.status`, …).
    public static let incomingXattrPrefix = "user.ncfs."

    /// getxattr/listxattr answer either the value's size (the caller asked with capacity 0)
    /// or the value itself.
    public enum XattrReply: Sendable, Equatable {
        case size(Int)
        case value([UInt8])
    }

    public func getxattr(_ inode: UInt64, name: String, capacity: Int) throws(FSError) -> XattrReply {
        let path = try path(of: inode)
        if let place = incomingPlace(path) {
            guard let value = try xattrs(in: place)[name] else { throw .noAttribute }
            return try fit(Array(value.utf8), capacity: capacity)
        }
        guard let entry = try entry(at: path) else { throw .notFound }
        let text: String
        switch name {
        case "user.nextcloud.fileid": text = String(entry.fileID)
        case "user.nextcloud.etag": text = entry.etag
        case "user.nextcloud.permissions": text = entry.permissions.letters
        case "user.nextcloud.size": text = String(entry.size)
        default: throw .noAttribute
        }
        return try fit(Array(text.utf8), capacity: capacity)
    }

    /// The names, each followed by a NUL, as listxattr returns them.
    public func listxattr(_ inode: UInt64, capacity: Int) throws(FSError) -> XattrReply {
        _ = try getattr(inode)
        var bytes: [UInt8] = []
        if let place = incomingPlace(try path(of: inode)) {
            for name in try xattrs(in: place).keys.sorted() { bytes += Array(name.utf8) + [0] }
            return try fit(bytes, capacity: capacity)
        }
        for name in FileSystem.xattrNames { bytes += Array(name.utf8) + [0] }
        return try fit(bytes, capacity: capacity)
    }

    /// setxattr/removexattr: the attributes mirror server properties and cannot be changed.
    public func setxattr(_ inode: UInt64, name: String) throws(FSError) {
        _ = try path(of: inode)
        throw .attributeReadOnly
    }

    private func fit(_ bytes: [UInt8], capacity: Int) throws(FSError) -> XattrReply {
        if capacity == 0 { return .size(bytes.count) }
        if capacity < bytes.count { throw .bufferTooSmall }
        return .value(bytes)
    }
}
