import Foundation

/// Removes metadata chunks from a WebP file.
///
/// libvips 8.14.1's WebP saver writes an EXIF chunk even with `strip` — the source's
/// camera, dates and GPS position when it had them, a fresh block otherwise — so every
/// WebP derivative passes through here. The RIFF container is simple enough to edit
/// directly (https://developers.google.com/speed/webp/docs/riff_container):
///
///     "RIFF" <u32 LE: file size − 8> "WEBP"
///     chunks: <fourcc> <u32 LE: payload size> <payload> <pad byte when the size is odd>
///
/// The "EXIF", "XMP " and "ICCP" chunks are dropped, and the matching flags in the "VP8X"
/// header chunk (ICC 0x20, EXIF 0x08, XMP 0x04) cleared; image, alpha and animation chunks
/// are copied as they are.
enum WebPContainer {
    static let metadataChunks: Set<String> = ["EXIF", "XMP ", "ICCP"]
    static let metadataFlags: UInt8 = 0x20 | 0x08 | 0x04

    static func removeMetadata(fileAt path: String) throws(Vips.Failure) {
        let original: Data
        do {
            original = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Vips.Failure(description: "reading the WebP just written failed: \(error.localizedDescription)")
        }
        guard let stripped = removingMetadata(from: original) else {
            throw Vips.Failure(description: "the WebP encoder wrote a file that is not a RIFF WebP container")
        }
        guard stripped != original else { return }
        do {
            try stripped.write(to: URL(fileURLWithPath: path))
        } catch {
            throw Vips.Failure(description: "rewriting the WebP without metadata failed: \(error.localizedDescription)")
        }
    }

    /// The file without metadata chunks, or nil when it is not a well-formed WebP.
    static func removingMetadata(from file: Data) -> Data? {
        let bytes = [UInt8](file)
        guard bytes.count >= 12, fourcc(bytes, 0) == "RIFF", fourcc(bytes, 8) == "WEBP" else { return nil }
        var output = Array(bytes[0..<12])
        var offset = 12
        while offset < bytes.count {
            guard offset + 8 <= bytes.count else { return nil }
            let name = fourcc(bytes, offset)
            let size = Int(littleEndian32(bytes, offset + 4))
            let end = offset + 8 + size + (size & 1)
            guard end <= bytes.count || (end == bytes.count + 1 && size & 1 == 1) else { return nil }
            let chunkEnd = min(end, bytes.count)
            if !metadataChunks.contains(name) {
                var chunk = Array(bytes[offset..<chunkEnd])
                if name == "VP8X", size >= 1 { chunk[8] &= ~metadataFlags }
                output += chunk
            }
            offset = end
        }
        let riffSize = UInt32(output.count - 8)
        output.replaceSubrange(4..<8, with: withUnsafeBytes(of: riffSize.littleEndian, Array.init))
        return Data(output)
    }

    private static func fourcc(_ bytes: [UInt8], _ offset: Int) -> String {
        String(decoding: bytes[offset..<offset + 4], as: UTF8.self)
    }

    private static func littleEndian32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }
}
