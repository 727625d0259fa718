// FSError is declared in FileSystemInterface (the ingest pipeline throws it too); FileSystem
// re-exports that target, so FUSEBridge and the tests see FSError and WorkerPool by importing
// FileSystem alone. The `@_exported` here makes them visible in every file of this module.
@_exported import FileSystemInterface
import WebDAV

extension FSError {
    /// Failures an open retries: the staged file it found went away (its staging file is
    /// gone), or a GET for staging hit the version the finished upload replaced.
    var isStagingRace: Bool {
        switch self {
        case .stagingRace: return true
        case .remote(let error): return error.kind == .preconditionFailed
        default: return false
        }
    }
}
