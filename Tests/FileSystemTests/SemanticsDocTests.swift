import FileSystem
import Foundation
import Testing
import WebDAV

/// docs/SEMANTICS.md holds the errno table for readers; `FSError.errno` and
/// `FSError.errno(for:)` hold it for the kernel. This reads the document's tables and checks
/// them against the code both ways: every row says what the code does, and every case the
/// code has is a row. The switches below have no `default:`, so a new case stops this file
/// compiling until it is named here, and then the test fails until the document has its row.
@Suite("docs/SEMANTICS.md")
struct SemanticsDocTests {
    /// Every DAVError kind, named as the document names it.
    static let kinds: [DAVError.Kind] = [
        .notFound, .unauthorized, .forbidden, .conflict, .alreadyExists, .preconditionFailed, .locked,
        .insufficientStorage, .badRequest, .invalidName, .throttled, .unavailable, .server, .transport,
        .protocolViolation, .unsupported,
    ]

    static func name(_ kind: DAVError.Kind) -> String {
        switch kind {
        case .notFound: "notFound"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .conflict: "conflict"
        case .alreadyExists: "alreadyExists"
        case .preconditionFailed: "preconditionFailed"
        case .locked: "locked"
        case .insufficientStorage: "insufficientStorage"
        case .badRequest: "badRequest"
        case .invalidName: "invalidName"
        case .throttled: "throttled"
        case .unavailable: "unavailable"
        case .server: "server"
        case .transport: "transport"
        case .protocolViolation: "protocolViolation"
        case .unsupported: "unsupported"
        }
    }

    /// Every FSError case but `.remote` (which is the kinds table).
    static let localErrors: [FSError] = [
        .notFound, .notDirectory, .isDirectory, .readOnly, .noAttribute, .bufferTooSmall, .stale,
        .attributeReadOnly, .badHandle, .cacheFailure(""), .exists, .notEmpty, .invalid, .notPermitted,
        .stagingRace, .busy, .crossDevice, .nameTooLong,
    ]

    static func name(_ error: FSError) -> String {
        switch error {
        case .remote: "remote"
        case .notFound: "notFound"
        case .notDirectory: "notDirectory"
        case .isDirectory: "isDirectory"
        case .readOnly: "readOnly"
        case .noAttribute: "noAttribute"
        case .bufferTooSmall: "bufferTooSmall"
        case .stale: "stale"
        case .attributeReadOnly: "attributeReadOnly"
        case .badHandle: "badHandle"
        case .cacheFailure: "cacheFailure"
        case .exists: "exists"
        case .notEmpty: "notEmpty"
        case .invalid: "invalid"
        case .notPermitted: "notPermitted"
        case .stagingRace: "stagingRace"
        case .busy: "busy"
        case .crossDevice: "crossDevice"
        case .nameTooLong: "nameTooLong"
        }
    }

    /// The errno names the document may use.
    static let errnoNames: [String: Int32] = [
        "EACCES": EACCES, "ENOENT": ENOENT, "ESTALE": ESTALE, "EBUSY": EBUSY, "ENOSPC": ENOSPC, "EEXIST": EEXIST,
        "EINVAL": EINVAL, "EAGAIN": EAGAIN, "EIO": EIO, "ENOTSUP": ENOTSUP, "EROFS": EROFS, "ENOTDIR": ENOTDIR,
        "EISDIR": EISDIR, "ENAMETOOLONG": ENAMETOOLONG, "ENODATA": ENODATA, "ERANGE": ERANGE, "EBADF": EBADF, "ENOTEMPTY": ENOTEMPTY,
        "EPERM": EPERM, "EXDEV": EXDEV,
    ]

    /// A table row: its first cell's code name (between backticks) and its errno name.
    struct Row: Equatable {
        var name: String
        var errno: String
    }

    /// The rows of the document's `## Errors` section whose first cell is a code name in
    /// backticks: `` `kind` `` rows are the server table, `` `.case` `` rows the local one.
    static func rows() throws -> (kinds: [Row], local: [Row]) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/SEMANTICS.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0 == "## Errors" }, "docs/SEMANTICS.md has no `## Errors` section")
        let section = lines[(start + 1)...].prefix { !$0.hasPrefix("## ") }
        var kinds: [Row] = [], local: [Row] = []
        for line in section where line.hasPrefix("|") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard let first = cells.first, first.hasPrefix("`"), first.hasSuffix("`"), first.count > 2 else { continue }
            let name = String(first.dropFirst().dropLast())
            let errnos = cells.dropFirst().filter { $0.count > 1 && $0.hasPrefix("E") && $0.allSatisfy { $0.isUppercase || $0.isNumber } }
            try #require(errnos.count == 1, "row \(line): expected exactly one errno cell, found \(errnos)")
            if name.hasPrefix(".") {
                local.append(Row(name: String(name.dropFirst()), errno: errnos[0]))
            } else {
                kinds.append(Row(name: name, errno: errnos[0]))
            }
        }
        return (kinds, local)
    }

    @Test("the server-failure table has one row per DAVError kind, each with the errno FSError.errno(for:) gives")
    func serverTable() throws {
        let rows = try Self.rows().kinds
        #expect(rows.map(\.name).sorted() == Self.kinds.map(Self.name).sorted(), "rows and DAVError kinds differ")
        #expect(Set(rows.map(\.name)).count == rows.count, "a kind has two rows")
        for kind in Self.kinds {
            guard let row = rows.first(where: { $0.name == Self.name(kind) }) else { continue }
            let documented = try #require(Self.errnoNames[row.errno], "unknown errno name \(row.errno)")
            let error = DAVError(kind, method: "GET", path: "x")
            #expect(FSError.errno(for: error) == documented, "\(Self.name(kind)): the document says \(row.errno)")
            // A server failure reaches the kernel through FSError.remote with the same errno.
            #expect(FSError.remote(error).errno == documented)
        }
    }

    @Test("the local-failure table has one row per FSError case, each with the errno FSError.errno gives")
    func localTable() throws {
        let rows = try Self.rows().local
        #expect(rows.map(\.name).sorted() == Self.localErrors.map(Self.name).sorted(), "rows and FSError cases differ")
        #expect(Set(rows.map(\.name)).count == rows.count, "a case has two rows")
        for error in Self.localErrors {
            guard let row = rows.first(where: { $0.name == Self.name(error) }) else { continue }
            let documented = try #require(Self.errnoNames[row.errno], "unknown errno name \(row.errno)")
            #expect(error.errno == documented, "\(Self.name(error)): the document says \(row.errno)")
        }
    }
}
