import Foundation

/// A test server whose files are written straight to its data folder (server stopped, then
/// restarted so it indexes them): fast set-up for thousands of entries.
public func populatedServer(_ populate: (URL) throws -> Void) throws -> TestServer {
    let server = try TestServer()
    server.stop()
    try populate(server.filesDir)
    try server.start()
    return server
}

/// Writes `bytes` at `url`, creating missing folders.
public func write(_ url: URL, _ bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
}

/// xorshift64*: reproducible random sequences for tests.
public struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed == 0 ? 1 : seed }
    public mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
