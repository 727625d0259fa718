// Hostile-input fuzzing of the parsers that read server bytes (`ParserInvariants`).
//
// Two builds of one target:
// - `scripts/fuzz` builds it with `--sanitize fuzzer -Xswiftc -sanitize=fuzzer,address
//   -Xswiftc -DNCFS_LIBFUZZER` (its header says why the sanitizers are spelt twice).
//   libFuzzer's runtime then brings `main` and calls `LLVMFuzzerTestOneInput` below for every
//   input it generates; coverage comes from the instrumented Swift targets (WebDAV and this
//   one; libxml2 itself is a system library and not instrumented). SwiftPM, when the fuzzer
//   sanitizer is on, links the runtime's `main` and does not rename ours, so a Swift `@main`
//   must not exist in that build.
// - A normal `swift build` compiles the replay tool instead: `ncfs-fuzz FILE|DIR...` runs
//   each file through the same checks and exits 1 on any violation, so a crasher can be
//   looked at without the fuzzing toolchain.

import Foundation
import WebDAVInvariants

/// Written to stderr before aborting; `scripts/fuzz` tells invariant violations from other
/// crashes (traps, ASan reports) by this marker.
let violationMarker = "ncfs-fuzz: invariant violated"

#if NCFS_LIBFUZZER

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let violations = ParserInvariants.violations(in: input)
    guard violations.isEmpty else {
        for violation in violations { FileHandle.standardError.write(Data("\(violationMarker): \(violation)\n".utf8)) }
        // SIGABRT is one of libFuzzer's deadly signals: it saves the input as a crash artifact.
        abort()
    }
    return 0
}

#else

@main
struct ReplayTool {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard !arguments.isEmpty, !arguments.contains("-h"), !arguments.contains("--help") else {
            print("usage: ncfs-fuzz FILE|DIR...  (replays inputs through the parser invariants)")
            exit(arguments.isEmpty ? 2 : 0)
        }
        var inputs = 0
        var failed = 0
        for file in arguments.flatMap(files) {
            guard let bytes = FileManager.default.contents(atPath: file) else {
                print("\(file): cannot read")
                failed += 1
                continue
            }
            inputs += 1
            let violations = ParserInvariants.violations(in: [UInt8](bytes))
            if !violations.isEmpty { failed += 1 }
            for violation in violations { print("\(file): \(violationMarker): \(violation)") }
        }
        print("\(inputs) inputs replayed, \(failed) with violations")
        exit(failed == 0 ? 0 : 1)
    }

    /// The file itself, or the regular files directly inside a folder, sorted.
    static func files(_ path: String) -> [String] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue,
              let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [path] }
        return names.sorted().map { "\(path)/\($0)" }.filter { file in
            var isFolder: ObjCBool = false
            return FileManager.default.fileExists(atPath: file, isDirectory: &isFolder) && !isFolder.boolValue
        }
    }
}

#endif
