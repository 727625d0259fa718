import Foundation

/// What the ingest pipeline tells the `incoming/` folder, and is told by it. Paths are relative
/// to the incoming folder ("photos/a.jpg").
public protocol IncomingObserver: AnyObject, Sendable {
    /// Runs `change` (an open for writing, a truncate, a rename, an unlink of `paths`) if the
    /// pipeline allows it now for every one of them, else throws `.busy`: an item being
    /// uploaded or derived cannot change under the pipeline. Called with no filesystem lock held.
    func permitChange<T>(_ paths: [String], _ change: () throws(FSError) -> T) throws(FSError) -> T
    /// The file at `path` was closed after writing, renamed to this name, or had its times
    /// set: it becomes (again) a candidate, taken once it has been quiet for a moment.
    func changed(_ path: String)
    /// The file at `path` was unlinked or renamed away by the user.
    func removed(_ path: String)
    /// `user.ncfs.*` extended attributes of the file at `path` (name → value).
    func attributes(_ path: String) -> [String: String]
}

/// The `incoming/` folder as the ingest pipeline sees it: a local folder of staged files the
/// user writes through the mount. FileSystem's `IncomingFolder` is the one implementation; the
/// pipeline holds it through this protocol so that it needs no part of the filesystem.
public protocol IncomingStaging: AnyObject, Sendable {
    /// The local folder holding the staged files.
    var root: URL { get }
    /// Told of every change the user makes in the folder; set once, before the mount is served.
    var observer: (any IncomingObserver)? { get set }
    /// The local path of a staged file or folder (`relative` "" is `root`).
    func localPath(_ relative: String) -> String
    /// Whether a writable handle is open on `path` (such a file is not quiet, whatever its mtime).
    func isOpenForWriting(_ path: String) -> Bool
}

/// Naming rules of the staged files, shared by the folder and the pipeline.
public enum IncomingNames {
    /// Names that are not items until renamed to a real name: rsync's `.name.XXXXXX`,
    /// editors' `name~` and `.name.swp`, GNOME's `.goutputstream-*`, browsers' `*.part`.
    public static func isTemporaryName(_ name: String) -> Bool {
        if name.hasSuffix("~") || name.hasSuffix(".part") || name.hasSuffix(".crdownload") { return true }
        guard name.hasPrefix(".") else { return false }
        if name.hasPrefix(".goutputstream-") || name.hasSuffix(".swp") || name.hasSuffix(".swx") { return true }
        // rsync: "." + name + "." + 6 random characters.
        let parts = name.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
        if parts.count >= 2, let last = parts.last, last.count == 6, last.allSatisfy({ $0.isLetter || $0.isNumber }) { return true }
        return false
    }
}
