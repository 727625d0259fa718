import DerivationFormat
import Foundation
@testable import Imaging

/// The edge-case images of scripts/test-images/make.py, written once per test process into
/// a temporary folder and derived once; tests read the shared results.
struct Fixture: Sendable {
    /// What manifest.json says of one file.
    struct Entry: Decodable, Sendable {
        var kind: String
        var expected: String
        var width: Int?
        var height: Int?
        var orientation: Int?
        var captureDate: String?
        var alpha: Bool?
        var frames: Int?
        var colour: String?
    }

    let images: URL
    let outputs: URL
    let manifest: [String: Entry]
    let results: [String: DerivationResult]

    /// The folder a file's derivatives were written into.
    func output(_ name: String) -> URL { outputs.appendingPathComponent(name, isDirectory: true) }

    func derivative(_ name: String, _ kind: Derivative.Kind) -> (Derivative, URL)? {
        guard let derivative = results[name]?.derivatives.first(where: { $0.kind == kind }) else { return nil }
        return (derivative, output(name).appendingPathComponent(derivative.relativePath))
    }

    func names(expected: String) -> [String] { manifest.filter { $0.value.expected == expected }.keys.sorted() }
}

enum Fixtures {
    /// The repository root, from this file's path (Tests/ImagingTests/Fixtures.swift).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let python = repository.appendingPathComponent(".venv/bin/python3").path
    static let script = repository.appendingPathComponent("scripts/test-images/make.py").path

    /// Whether make.py can run: the project's venv with Pillow (scripts/setup makes it).
    static let canMakeImages: Bool = {
        guard FileManager.default.isExecutableFile(atPath: python) else { return false }
        return (try? run(python, ["-c", "import PIL"]).status) == 0
    }()

    static let skipReason = "needs .venv/bin/python3 with Pillow to make the test images (scripts/setup installs it)"

    /// Made on first use; a failure here fails every test that needs it, with the reason.
    static let shared: Result<Fixture, FixtureError> = make()

    struct FixtureError: Error, CustomStringConvertible {
        let description: String
    }

    private static func make() -> Result<Fixture, FixtureError> {
        removeLeftovers()
        let root = FileManager.default.temporaryDirectory
            .appendingPathComponent("ncfs-imaging-tests-\(getpid())-\(UUID().uuidString.prefix(8))", isDirectory: true)
        let images = root.appendingPathComponent("images", isDirectory: true)
        let outputs = root.appendingPathComponent("derived", isDirectory: true)
        do {
            let made = try run(python, [script, images.path])
            guard made.status == 0 else {
                return .failure(FixtureError(description: "make.py failed (\(made.status)): \(made.output)"))
            }
            let data = try Data(contentsOf: images.appendingPathComponent("manifest.json"))
            let manifest = try JSONDecoder().decode([String: Fixture.Entry].self, from: data)
            var results: [String: DerivationResult] = [:]
            for name in manifest.keys.sorted() {
                results[name] = try ImageDeriver.derive(source: images.appendingPathComponent(name), stem: "item",
                                                        into: outputs.appendingPathComponent(name, isDirectory: true))
            }
            return .success(Fixture(images: images, outputs: outputs, manifest: manifest, results: results))
        } catch {
            return .failure(FixtureError(description: "making the fixture failed: \(error)"))
        }
    }

    /// swift-testing has no end-of-run hook, so each run's images stay behind; a later run
    /// removes those of test processes that have exited.
    private static func removeLeftovers() {
        let temporary = FileManager.default.temporaryDirectory
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? [] {
            let parts = name.split(separator: "-")
            guard name.hasPrefix("ncfs-imaging-tests-"), parts.count >= 5, let pid = Int32(parts[3]) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: temporary.appendingPathComponent(name))
            }
        }
    }

    /// Runs a program to completion. `output` is stdout then stderr, for messages; stderr
    /// goes through a file so that neither stream can fill a pipe while the other is read.
    static func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String, stdout: Data) {
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-imaging-stderr-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: errors.path, contents: nil) else {
            throw FixtureError(description: "cannot create \(errors.path)")
        }
        defer { try? FileManager.default.removeItem(at: errors) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = (try? Data(contentsOf: errors)) ?? Data()
        return (process.terminationStatus, String(decoding: stdout + stderr, as: UTF8.self), stdout)
    }
}
