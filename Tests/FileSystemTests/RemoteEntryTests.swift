import RemoteCache
import Testing

/// The cached entry's size: one per cached child, so 100,000 of them are the daemon's largest
/// table (the budget is 64 MiB resident with 100,000 entries).
@Suite("RemoteEntry: compact and exact")
struct RemoteEntryTests {
    func entry(etag: String) -> RemoteEntry {
        RemoteEntry(name: "e0000", isDirectory: false, size: 0, mtime: 0, etag: etag, fileID: 1, permissions: [])
    }

    @Test("every ETag reads back exactly as given, whatever its shape")
    func etagsRoundTrip() {
        let etags = ["9263121a7de8b8faadd5effcc87d9e11", "00000000000000000000000000000000", "ffffffffffffffffffffffffffffffff",
                     "0000000000000001000000000000000a",
                     // Not 32 lowercase hex digits: kept as text.
                     "9263121A7DE8B8FAADD5EFFCC87D9E11", "9263121a7de8b8faadd5effcc87d9e1", "9263121a7de8b8faadd5effcc87d9e110",
                     "9263121a7de8b8faadd5effcc87d9e1g", "+263121a7de8b8faadd5effcc87d9e11", "6b1736becde2d", "", "W/\"x\"", "é"]
        for etag in etags {
            var e = entry(etag: etag)
            #expect(e.etag == etag)
            e.etag = etag + "1"
            #expect(e.etag == etag + "1")
        }
    }

    @Test("entries are equal exactly when their ETags' texts are")
    func equality() {
        #expect(entry(etag: "9263121a7de8b8faadd5effcc87d9e11") == entry(etag: "9263121a7de8b8faadd5effcc87d9e11"))
        #expect(entry(etag: "9263121a7de8b8faadd5effcc87d9e11") != entry(etag: "9263121a7de8b8faadd5effcc87d9e12"))
        #expect(entry(etag: "9263121a7de8b8faadd5effcc87d9e11") != entry(etag: "9263121A7DE8B8FAADD5EFFCC87D9E11"))
    }

    @Test("an entry takes at most 80 bytes inline, and an MD5 ETag no heap allocation of its own")
    func layout() {
        #expect(MemoryLayout<RemoteEntry>.stride <= 80, "\(MemoryLayout<RemoteEntry>.stride)")
        // The MD5-shaped ETag's value is held in the entry's own bytes (its text is made on
        // demand), not in a string's heap storage.
        let e = entry(etag: "9263121a7de8b8faadd5effcc87d9e11")
        let needle = withUnsafeBytes(of: UInt64(0x9263_121a_7de8_b8fa)) { Array($0) }
        let bytes = withUnsafeBytes(of: e) { Array($0) }
        #expect((0...(bytes.count - 8)).contains { Array(bytes[$0..<$0 + 8]) == needle })
    }
}
