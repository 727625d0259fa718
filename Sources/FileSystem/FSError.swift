import Foundation
public import WebDAV

/// Every way a filesystem operation fails. `errno` is the one place these become numbers.
public enum FSError: Error, Sendable {
    /// The server (or the transport) said no.
    case remote(DAVError)
    /// The name is not in its folder's (fresh) listing, or the inode is unknown.
    case notFound
    case notDirectory
    case isDirectory
    /// Writes are not implemented yet: the mount is read-only.
    case readOnly
    /// getxattr of a name ncfs does not provide.
    case noAttribute
    /// The caller's buffer is smaller than the value (getxattr/listxattr).
    case bufferTooSmall
    /// The file changed on the server while open (GET answered with another ETag).
    case stale
    /// The xattrs are the server's properties and cannot be set.
    case attributeReadOnly
    /// A file handle the kernel passed that ncfs never handed out.
    case badHandle
    /// The local content cache could not be read or written (disk full, folder removed…).
    case cacheFailure(String)
    /// The name is taken (O_EXCL, mkdir, rename with RENAME_NOREPLACE).
    case exists
    /// rmdir, or rename onto, a folder that is not empty.
    case notEmpty
    /// An argument the operation cannot take (a folder renamed into itself).
    case invalid
    /// Hard links, symbolic links and device files: the server has no such thing.
    case notPermitted
    /// An open raced with an upload finishing (the staged file it found was retired); the
    /// open is retried and this never reaches the kernel unless that keeps happening.
    case stagingRace
    /// An incoming/ item the pipeline is uploading or deriving right now cannot be changed.
    case busy
    /// A rename between incoming/ (local until ingested) and the server's tree.
    case crossDevice
    /// A symbolic link's target longer than PATH_MAX.
    case nameTooLong
}

extension FSError {
    /// The errno the kernel gets. Exhaustive on purpose: a new case must be mapped here.
    public var errno: Int32 {
        switch self {
        case .remote(let error): return FileSystem.errno(for: error)
        case .notFound: return ENOENT
        case .notDirectory: return ENOTDIR
        case .isDirectory: return EISDIR
        case .readOnly: return EROFS
        case .noAttribute: return ENODATA
        case .bufferTooSmall: return ERANGE
        case .stale: return ESTALE
        // ENOTSUP rather than EPERM: the operation is unsupported for every user, it is not a
        // question of privileges (`setfattr` prints "Operation not supported").
        case .attributeReadOnly: return ENOTSUP
        case .badHandle: return EBADF
        case .cacheFailure: return EIO
        case .exists: return EEXIST
        case .notEmpty: return ENOTEMPTY
        case .invalid: return EINVAL
        case .notPermitted: return EPERM
        case .stagingRace: return EAGAIN
        case .busy: return EBUSY
        // mv falls back to copy + unlink, which is exactly an ingest.
        case .crossDevice: return EXDEV
        case .nameTooLong: return ENAMETOOLONG
        }
    }

    /// Failures an open retries: the staged file it found went away (its staging file is
    /// gone), or a GET for staging hit the version the finished upload replaced.
    var isStagingRace: Bool {
        switch self {
        case .stagingRace: return true
        case .remote(let error): return error.kind == .preconditionFailed
        default: return false
        }
    }

    /// Wraps any error thrown below the filesystem; DAVErrors keep their kind.
    static func wrap(_ error: any Error) -> FSError {
        switch error {
        case let e as FSError: return e
        case let e as DAVError: return .remote(e)
        default: return .remote(DAVError(.server, method: "", path: "", detail: "\(error)"))
        }
    }
}

extension FileSystem {
    /// The errno for a server or transport failure. One exhaustive switch, no `default:`.
    ///
    /// | kind | errno | why |
    /// |---|---|---|
    /// | unauthorized (401), forbidden (403) | EACCES | |
    /// | notFound (404/410), conflict (409: parent missing) | ENOENT | |
    /// | preconditionFailed (412) | ESTALE | the version changed under us |
    /// | locked (423) | EBUSY | |
    /// | insufficientStorage (507) | ENOSPC | |
    /// | alreadyExists (405 on MKCOL) | EEXIST | |
    /// | invalidName | EINVAL | refused before sending |
    /// | badRequest (400) | EINVAL | |
    /// | throttled (429), unavailable (503) after retries | EAGAIN | temporary; try again later |
    /// | transport (no answer, timeout), server (5xx), protocolViolation | EIO | |
    /// | unsupported | ENOTSUP | |
    public static func errno(for error: DAVError) -> Int32 {
        switch error.kind {
        case .unauthorized, .forbidden: return EACCES
        case .notFound, .conflict: return ENOENT
        case .preconditionFailed: return ESTALE
        case .locked: return EBUSY
        case .insufficientStorage: return ENOSPC
        case .alreadyExists: return EEXIST
        case .invalidName, .badRequest: return EINVAL
        case .throttled, .unavailable: return EAGAIN
        case .transport, .server, .protocolViolation: return EIO
        case .unsupported: return ENOTSUP
        }
    }
}
