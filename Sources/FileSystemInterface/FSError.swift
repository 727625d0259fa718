import Foundation
public import WebDAV

/// Every way a filesystem operation fails. `errno` is the one place these become numbers;
/// docs/SEMANTICS.md holds the same table for readers, and FileSystemTests checks the two agree.
public enum FSError: Error, Sendable {
    /// The server (or the transport) said no.
    case remote(DAVError)
    /// The name is not in its folder's (fresh) listing, or the inode is unknown.
    case notFound
    case notDirectory
    case isDirectory
    /// A write on a read-only mount (`-o ro`: no write-back, no journal).
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
    /// Wraps any error thrown below the filesystem; DAVErrors keep their kind.
    public static func wrap(_ error: any Error) -> FSError {
        switch error {
        case let e as FSError: return e
        case let e as DAVError: return .remote(e)
        default: return .remote(DAVError(.server, method: "", path: "", detail: "\(error)"))
        }
    }
}

extension FSError {
    /// The errno the kernel gets. Exhaustive on purpose: a new case must be mapped here.
    public var errno: Int32 {
        switch self {
        case .remote(let error): return FSError.errno(for: error)
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

    /// The errno for a server or transport failure. One exhaustive switch, no `default:`; the
    /// reasons for each row are in docs/SEMANTICS.md ("Errors"), which a test keeps in step.
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
