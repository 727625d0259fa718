// ncfs-derive: make the derivatives of one file and print what happened as JSON.
//
// The ncfs daemon runs one of these per ingested file, several side by side, so that a
// decoder crash, a decompression bomb or a leak in an image library costs one short-lived
// child process and never the mount. Exit status: 0 when the file was looked at — also
// when it is not an image or is corrupt; the JSON says so —, 2 for usage errors and for
// an environment that prevents the work (unreadable source, unwritable output folder),
// 1 if libvips cannot start.
import Foundation
import Imaging

let version = "0.1.0"

let usage = """
    usage: ncfs-derive --source FILE --stem STEM --out DIR [--preview-edge N] [--concurrency N]
           ncfs-derive --version

    Writes DIR/preview/STEM-preview.EXT, DIR/low/STEM-w320.webp, DIR/high/STEM-w768.webp and
    DIR/high/STEM-w1280.webp for an image FILE and prints one JSON object on stdout.

      --source FILE       the original
      --stem STEM         base name of the derivatives (no "/")
      --out DIR           derivation folder, created if missing
      --preview-edge N    longest edge of the preview in pixels (default 2048)
      --concurrency N     libvips worker threads (default 1)
    """

/// The command line, parsed by hand: five flags do not justify a dependency.
struct Arguments {
    var source: String?
    var stem: String?
    var out: String?
    var previewEdge = 2048
    var concurrency = 1
    var showVersion = false
    var showHelp = false

    init(_ words: [String]) throws(UsageError) {
        var rest = words[...]
        while let word = rest.popFirst() {
            // Accept both "--flag value" and "--flag=value".
            let (flag, inline) = word.split(separator: "=", maxSplits: 1).map(String.init).pair
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                guard let next = rest.popFirst() else { throw UsageError("\(flag) needs a value") }
                return next
            }
            func number(atLeast minimum: Int) throws(UsageError) -> Int {
                let text = try value()
                guard let n = Int(text), n >= minimum else { throw UsageError("\(flag) needs a whole number ≥ \(minimum), not \"\(text)\"") }
                return n
            }
            switch flag {
            case "--source": source = try value()
            case "--stem": stem = try value()
            case "--out": out = try value()
            case "--preview-edge": previewEdge = try number(atLeast: 1)
            case "--concurrency": concurrency = try number(atLeast: 1)
            case "--version": showVersion = true
            case "--help", "-h": showHelp = true
            default: throw UsageError("unknown argument \"\(word)\"")
            }
        }
    }
}

struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension Array where Element == String {
    /// ["--a", "b"] → ("--a", "b"); ["--a"] → ("--a", nil).
    fileprivate var pair: (String, String?) { (self[0], count > 1 ? self[1] : nil) }
}

func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data("ncfs-derive: \(message)\n".utf8))
    exit(status)
}

let arguments: Arguments
do {
    arguments = try Arguments(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail("\(error.message)\n\(usage)", status: 2)
}
if arguments.showHelp {
    print(usage)
    exit(0)
}
if arguments.showVersion {
    print("ncfs-derive \(version) (libvips \(ImageDeriver.libvipsVersion))")
    exit(0)
}
guard let source = arguments.source, let stem = arguments.stem, let out = arguments.out else {
    fail("--source, --stem and --out are required\n\(usage)", status: 2)
}

do {
    try ImageDeriver.initialize(concurrency: arguments.concurrency)
} catch {
    fail(error.description, status: 1)
}
do {
    let result = try ImageDeriver.derive(source: URL(fileURLWithPath: source), stem: stem,
                                         into: URL(fileURLWithPath: out, isDirectory: true),
                                         options: DerivationOptions(previewMaxEdge: arguments.previewEdge))
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let json = try encoder.encode(result)
    FileHandle.standardOutput.write(json + Data("\n".utf8))
} catch let error as ImagingError {
    fail(error.description, status: 2)
} catch {
    fail("cannot encode the result: \(error)", status: 1)
}
