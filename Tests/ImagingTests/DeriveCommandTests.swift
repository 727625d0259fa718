import DerivationFormat
import Foundation
import Imaging
import Testing

/// The `ncfs-derive` executable, as the daemon runs it: the JSON contract and exit codes.
@Suite("ncfs-derive command", .enabled(if: DeriveCommand.binary != nil,
                                       "needs the built ncfs-derive next to the test bundle (swift build --product ncfs-derive)"))
struct DeriveCommandTests {
    static let keys: Set<String> = ["isImage", "format", "width", "height", "orientation", "captureDate", "palette",
                                    "derivatives", "error", "notImage"]

    @Test("derives a PNG and prints every key of the result, absent ones as null")
    func image() throws {
        let folder = try TemporaryFolder()
        let source = folder.url.appendingPathComponent("tiny.png")
        try Data(DerivationCornerTests.tinyPNG).write(to: source)
        let out = folder.url.appendingPathComponent("out")
        let run = try Fixtures.run(try #require(DeriveCommand.binary), ["--source", source.path, "--stem", "tiny", "--out", out.path,
                                                                "--preview-edge", "1024", "--concurrency", "1"])
        #expect(run.status == 0, "\(run.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: run.stdout) as? [String: Any])
        #expect(Set(object.keys) == Self.keys)
        #expect(object["captureDate"] is NSNull && object["error"] is NSNull)
        let result = try JSONDecoder().decode(DerivationResult.self, from: run.stdout)
        #expect(result.isImage && result.format == "png" && result.width == 2 && result.height == 2)
        #expect(result.derivatives.map(\.relativePath) == ["preview/tiny-preview.png", "low/tiny-w320.webp",
                                                           "high/tiny-w768.webp", "high/tiny-w1280.webp"])
        for derivative in result.derivatives {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(derivative.relativePath).path))
        }
    }

    @Test("a file that is not an image exits 0 with notImage")
    func notImage() throws {
        let folder = try TemporaryFolder()
        let source = folder.url.appendingPathComponent("notes.jpg")
        try Data("hello\n".utf8).write(to: source)
        let run = try Fixtures.run(try #require(DeriveCommand.binary), ["--source", source.path, "--stem", "notes", "--out", folder.url.path])
        #expect(run.status == 0, "\(run.output)")
        let result = try JSONDecoder().decode(DerivationResult.self, from: run.stdout)
        #expect(!result.isImage && result.notImage != nil)
    }

    @Test("usage errors and an unwritable out folder exit 2 with a message; --version exits 0")
    func exitCodes() throws {
        let binary = try #require(DeriveCommand.binary)
        let folder = try TemporaryFolder()
        let source = folder.url.appendingPathComponent("tiny.png")
        try Data(DerivationCornerTests.tinyPNG).write(to: source)
        let blocker = folder.url.appendingPathComponent("file")
        try Data().write(to: blocker)
        for arguments in [[], ["--source", source.path], ["--bogus"], ["--source", source.path, "--stem", "x", "--out", folder.url.path, "--preview-edge", "0"],
                          ["--source", source.path, "--stem", "x", "--out", blocker.path],
                          ["--source", folder.url.appendingPathComponent("missing").path, "--stem", "x", "--out", folder.url.path]] {
            let run = try Fixtures.run(binary, arguments)
            #expect(run.status == 2 && run.stdout.isEmpty && run.output.contains("ncfs-derive:"), "\(arguments): \(run.output)")
        }
        let version = try Fixtures.run(binary, ["--version"])
        #expect(version.status == 0 && version.output.hasPrefix("ncfs-derive ") && version.output.contains("libvips"))
    }
}

enum DeriveCommand {
    /// .build/<triple>/debug/ncfs-derive, beside the test executable.
    static let binary: String? = {
        let folder = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let candidate = folder.appendingPathComponent("ncfs-derive").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }()
}
