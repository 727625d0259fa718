import DerivationFormat
import Foundation
import WebDAV

/// A derivation kept in the item's work folder with the stem it was made for, so a resumed
/// item uploads exactly the files it made (and a renamed one makes them again).
private struct KeptDerivation: Codable {
    var stem: String
    var result: DerivationResult
}

extension IngestService {
    /// The item's derivation: the one kept in its work folder if it is complete and for the
    /// current stem, else a new run of `ncfs-derive`.
    func derivation(for item: IngestItem) throws -> DerivationResult {
        guard let staged = item.stagingPath else { throw PermanentFailure(description: "the staged copy is gone") }
        let name = item.originalPath.map { PathBytes.components($0).last ?? "" } ?? item.name
        let stem = Self.stem(name)
        let work = workFolder(item)
        let record = work.appendingPathComponent("result.json")
        if let data = try? Data(contentsOf: record), let kept = try? JSONDecoder().decode(KeptDerivation.self, from: data),
           kept.stem == stem,
           kept.result.derivatives.allSatisfy({ FileManager.default.fileExists(atPath: work.appendingPathComponent($0.relativePath).path) }) {
            return kept.result
        }
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        deriveSlots.wait()
        defer { deriveSlots.signal() }
        let result = try runDeriveTool(source: folder.localPath(staged), stem: stem, into: work)
        let data = try JSONEncoder().encode(KeptDerivation(stem: stem, result: result))
        try data.write(to: record, options: .atomic)
        // Private like everything in the state folder (the folder is 0700 meanwhile).
        chmod(record.path, 0o600)
        return result
    }

    /// Runs `ncfs-derive` in its own process: a decoder crash or an enormous image costs that
    /// process, never the mount. A crash or a timeout is recorded as the item's derivative
    /// error (the original is persisted regardless); a tool that cannot start fails the item.
    private func runDeriveTool(source: String, stem: String, into work: URL) throws -> DerivationResult {
        let process = Process()
        process.executableURL = settings.deriveTool
        process.arguments = ["--source", source, "--stem", stem, "--out", work.path, "--preview-edge", String(settings.previewEdge)]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw PermanentFailure(description: "cannot run \(settings.deriveTool.path): \(error)")
        }
        // The timeout is on the wall clock, not `settings.clock`: it bounds a real child
        // process's running time, which a test's manual clock does not move.
        let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + settings.deriveTimeout, execute: timer)
        // Both pipes are drained before waiting, so a chatty tool never blocks on a full pipe.
        let errorData = LockedData()
        let errorReader = Thread { errorData.set(errors.fileHandleForReading.readDataToEndOfFile()) }
        errorReader.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        while !errorData.isSet { usleep(1000) }
        let stderr = String(decoding: errorData.value.prefix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if process.terminationReason == .uncaughtSignal {
            return DerivationResult(isImage: true, error: "ncfs-derive ended by signal \(process.terminationStatus)\(stderr.isEmpty ? "" : ": \(stderr)")")
        }
        guard process.terminationStatus == 0 else {
            throw PermanentFailure(description: "ncfs-derive exited with \(process.terminationStatus): \(stderr)")
        }
        do {
            return try JSONDecoder().decode(DerivationResult.self, from: data)
        } catch {
            throw PermanentFailure(description: "ncfs-derive printed no result (\(error)): \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
    }
}

/// Bytes handed from a reader thread.
private final class LockedData: @unchecked Sendable {
    // @unchecked: both fields are guarded by `lock`.
    private let lock = NSLock()
    private var data: Data?
    func set(_ value: Data) { lock.withLock { data = value } }
    var isSet: Bool { lock.withLock { data != nil } }
    var value: Data { lock.withLock { data ?? Data() } }
}
