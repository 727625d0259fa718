import Foundation
@testable import Imaging
import Testing

/// Derives every file of scripts/test-images/make.py and decodes the outputs back with
/// libvips to check DESIGN.md §4's rules.
@Suite("Derivation of the edge-case images", .enabled(if: Fixtures.canMakeImages, "\(Fixtures.skipReason)"))
struct DerivationTests {
    let fixture: Fixture

    init() throws {
        fixture = try Fixtures.shared.get()
    }

    @Test("every image gets four derivatives, each its width or the original's, never enlarged")
    func sizes() throws {
        #expect(fixture.names(expected: "image").count >= 15)
        for name in fixture.names(expected: "image") {
            let entry = try #require(fixture.manifest[name])
            let result = try #require(fixture.results[name])
            let (w, h) = (try #require(entry.width), try #require(entry.height))
            #expect(result.isImage && result.error == nil && result.notImage == nil, "\(name): \(result)")
            #expect((result.width, result.height) == (w, h), "\(name)")
            #expect(result.derivatives.map(\.kind) == [.preview, .w320, .w768, .w1280], "\(name)")
            for derivative in result.derivatives {
                let url = fixture.output(name).appendingPathComponent(derivative.relativePath)
                let info = try ImageDeriver.inspect(url)
                #expect((info.width, info.height) == (derivative.width, derivative.height), "\(name) \(derivative.kind)")
                let bytes = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int
                #expect(bytes == derivative.bytes, "\(name) \(derivative.kind)")
                #expect(info.width <= w && info.height <= h, "\(name) \(derivative.kind) enlarged")
                #expect(info.pages == 1, "\(name) \(derivative.kind) has \(info.pages) frames")
                switch derivative.kind {
                case .preview:
                    #expect(max(info.width, info.height) == min(2048, max(w, h)), "\(name) preview")
                case .w320, .w768, .w1280:
                    let target = Int(derivative.kind.rawValue.dropFirst())!
                    #expect(info.width == min(target, w), "\(name) \(derivative.kind)")
                    #expect(info.format == "webp" && derivative.mimeType == "image/webp")
                    #expect(derivative.relativePath == (target == 320 ? "low" : "high") + "/item-\(derivative.kind).webp")
                    // Height follows the aspect ratio (rounding, and at least one pixel).
                    let expected = max(1, Double(h) * Double(info.width) / Double(w))
                    #expect(abs(Double(info.height) - expected) <= 1, "\(name) \(derivative.kind) \(info.height) vs \(expected)")
                }
            }
            #expect(!result.palette.isEmpty, "\(name) has no palette")
            #expect(result.palette.allSatisfy { $0.count == 7 && $0.hasPrefix("#") })
        }
    }

    @Test("the preview keeps JPEG, PNG, WebP and GIF, and turns the others into JPEG")
    func previewFormats() throws {
        let expected = ["rotated-6.jpg": ("jpeg", "jpg"), "alpha.png": ("png", "png"), "photo.webp": ("webp", "webp"),
                        "animated.gif": ("gif", "gif"), "image.tiff": ("jpeg", "jpg"), "photo.avif": ("jpeg", "jpg")]
        for (name, (format, suffix)) in expected {
            let (derivative, url) = try #require(fixture.derivative(name, .preview), "\(name)")
            #expect(try ImageDeriver.inspect(url).format == format, "\(name)")
            #expect(derivative.relativePath == "preview/item-preview.\(suffix)")
        }
        #expect(fixture.results["photo.avif"]?.format == "heif")
        #expect(fixture.results["image.tiff"]?.format == "tiff")
    }

    @Test("EXIF orientation 6 and 3 are applied: the stored top-left marker ends up top-right, bottom-right")
    func orientation() throws {
        let six = try #require(fixture.results["rotated-6.jpg"])
        #expect(six.orientation == 6 && six.width == 400 && six.height == 600)
        for derivative in six.derivatives { #expect(derivative.height > derivative.width, "\(derivative.kind)") }
        let (small6, url6) = try #require(fixture.derivative("rotated-6.jpg", .w320))
        #expect((small6.width, small6.height) == (320, 480))
        #expect(isWhite(try ImageDeriver.pixel(in: url6, x: small6.width - 8, y: 8)))
        #expect(!isWhite(try ImageDeriver.pixel(in: url6, x: 8, y: 8)))

        let three = try #require(fixture.results["rotated-3.jpg"])
        #expect(three.orientation == 3 && three.width == 500 && three.height == 300)
        let (small3, url3) = try #require(fixture.derivative("rotated-3.jpg", .w320))
        #expect(isWhite(try ImageDeriver.pixel(in: url3, x: small3.width - 6, y: small3.height - 6)))
        #expect(!isWhite(try ImageDeriver.pixel(in: url3, x: 6, y: 6)))
    }

    @Test("no EXIF, XMP, ICC or orientation is left in any derivative")
    func metadataStripped() throws {
        for name in fixture.names(expected: "image") {
            for derivative in fixture.results[name]?.derivatives ?? [] {
                let fields = try ImageDeriver.inspect(fixture.output(name).appendingPathComponent(derivative.relativePath)).metadataFields
                let personal = fields.filter {
                    $0.hasPrefix("exif-") || ["xmp-data", "iptc-data", "icc-profile-data", "orientation"].contains($0)
                }
                #expect(personal.isEmpty, "\(name) \(derivative.kind): \(personal)")
            }
        }
    }

    @Test("alpha is kept in WebP and PNG outputs")
    func alpha() throws {
        for name in ["alpha.png", "alpha.webp"] {
            for derivative in try #require(fixture.results[name]).derivatives {
                let info = try ImageDeriver.inspect(fixture.output(name).appendingPathComponent(derivative.relativePath))
                #expect(info.hasAlpha && info.bands == 4, "\(name) \(derivative.kind)")
            }
        }
        // A transparent corner of the PNG stays transparent.
        let (_, url) = try #require(fixture.derivative("alpha.png", .w320))
        #expect(try ImageDeriver.pixel(in: url, x: 1, y: 1).last == 0)
    }

    @Test("alpha is flattened onto white for a JPEG preview, and kept in the WebP sizes")
    func flattenedForJPEG() throws {
        let (preview, url) = try #require(fixture.derivative("alpha.tiff", .preview))
        #expect(preview.mimeType == "image/jpeg")
        #expect(try ImageDeriver.inspect(url).bands == 3)
        #expect(isWhite(try ImageDeriver.pixel(in: url, x: 1, y: 1)))
        let (_, small) = try #require(fixture.derivative("alpha.tiff", .w320))
        #expect(try ImageDeriver.inspect(small).hasAlpha)
    }

    @Test("a CMYK JPEG comes out as 3-band sRGB")
    func cmyk() throws {
        for derivative in try #require(fixture.results["cmyk.jpg"]).derivatives {
            let info = try ImageDeriver.inspect(fixture.output("cmyk.jpg").appendingPathComponent(derivative.relativePath))
            #expect(info.bands == 3 && info.interpretation == "srgb", "\(derivative.kind): \(info)")
        }
    }

    @Test("animated GIF and WebP give the first frame only")
    func animation() throws {
        for name in ["animated.gif", "animated.webp"] {
            #expect(fixture.manifest[name]?.frames == 3)
            for derivative in try #require(fixture.results[name]).derivatives {
                let url = fixture.output(name).appendingPathComponent(derivative.relativePath)
                #expect(try ImageDeriver.inspect(url).pages == 1, "\(name) \(derivative.kind)")
                let centre = try ImageDeriver.pixel(in: url, x: derivative.width / 2, y: derivative.height / 2)
                #expect(centre[0] > 200 && centre[1] < 60 && centre[2] < 60, "\(name) \(derivative.kind): \(centre)")
            }
        }
    }

    @Test("a truncated JPEG is an image whose derivation failed, and leaves no files")
    func truncated() throws {
        let result = try #require(fixture.results["truncated.jpg"])
        #expect(result.isImage && result.format == "jpeg")
        #expect(result.error?.isEmpty == false)
        #expect(result.derivatives.isEmpty && result.notImage == nil)
        let left = FileManager.default.enumerator(atPath: fixture.output("truncated.jpg").path)?
            .compactMap { $0 as? String }.filter { !["preview", "low", "high"].contains($0) } ?? []
        #expect(left.isEmpty, "\(left)")
    }

    @Test("a zero-byte file and a text file named .jpg are not images")
    func notImages() throws {
        for name in fixture.names(expected: "notImage") {
            let result = try #require(fixture.results[name])
            #expect(!result.isImage && result.format == nil && result.notImage != nil && result.error == nil, "\(name)")
            #expect(result.derivatives.isEmpty && result.palette.isEmpty)
        }
        #expect(fixture.results["empty.jpg"]?.notImage == "empty file")
    }

    @Test("capture date: DateTimeOriginal first, else DateTime")
    func captureDate() {
        for (name, entry) in fixture.manifest where entry.expected == "image" {
            #expect(fixture.results[name]?.captureDate == entry.captureDate, "\(name)")
        }
        #expect(fixture.results["rotated-6.jpg"]?.captureDate == "2021-07-14T09:30:00")
    }

    @Test("names with spaces, unicode, # and % derive like any other")
    func names() {
        for name in ["with space.jpg", "café é.jpg", "日本の写真.jpg", "hash#1.jpg", "100% done.jpg"] {
            #expect(fixture.results[name]?.derivatives.count == 4, "\(name)")
        }
    }

    private func isWhite(_ pixel: [Double]) -> Bool { pixel.prefix(3).allSatisfy { $0 > 225 } }
}

/// Cases that need no generated images.
@Suite("Derivation corner cases")
struct DerivationCornerTests {
    @Test("a 200 MB file of noise is recognised as not an image without being read")
    func bigNoise() throws {
        let folder = try TemporaryFolder()
        let path = folder.url.appendingPathComponent("noise.jpg").path
        // Random first 64 KiB (all any loader looks at), the rest a hole: cheap to make.
        var generator = SystemRandomNumberGenerator()
        let head = Data((0..<65_536).map { _ in UInt8.random(in: 0...255, using: &generator) })
        #expect(FileManager.default.createFile(atPath: path, contents: head))
        #expect(truncate(path, 200 << 20) == 0)
        let started = ContinuousClock.now
        let result = try ImageDeriver.derive(source: URL(fileURLWithPath: path), stem: "noise", into: folder.url.appendingPathComponent("out"))
        #expect(!result.isImage && result.notImage != nil)
        #expect(ContinuousClock.now - started < .seconds(2))
    }

    @Test("a name ending in ] is not read as libvips load options")
    func bracketName() throws {
        let folder = try TemporaryFolder()
        let image = folder.url.appendingPathComponent("shot [2]")
        try Data(Self.tinyPNG).write(to: image)
        let result = try ImageDeriver.derive(source: image, stem: "shot", into: folder.url.appendingPathComponent("out"))
        #expect(result.isImage && result.error == nil && result.derivatives.count == 4, "\(result)")
    }

    @Test("environment problems throw: missing source, folder not writable, stem with a slash")
    func environment() throws {
        let folder = try TemporaryFolder()
        let image = folder.url.appendingPathComponent("tiny.png")
        try Data(Self.tinyPNG).write(to: image)
        #expect(throws: ImagingError.self) {
            try ImageDeriver.derive(source: folder.url.appendingPathComponent("missing.png"), stem: "x", into: folder.url)
        }
        #expect(throws: ImagingError.invalidStem("a/b")) {
            try ImageDeriver.derive(source: image, stem: "a/b", into: folder.url)
        }
        let blocker = folder.url.appendingPathComponent("file")
        #expect(FileManager.default.createFile(atPath: blocker.path, contents: Data()))
        #expect(throws: ImagingError.self) {
            try ImageDeriver.derive(source: image, stem: "x", into: blocker)
        }
    }

    @Test("palette: box means, most common first, near-duplicates and transparent pixels skipped")
    func palette() {
        // 6 red, 3 blue, 2 almost-red in the next box (skipped as a near-copy), 4 transparent green.
        var pixels: [UInt8] = []
        for _ in 0..<6 { pixels += [250, 10, 10, 255] }
        for _ in 0..<3 { pixels += [10, 10, 250, 255] }
        for _ in 0..<2 { pixels += [222, 20, 10, 255] }
        for _ in 0..<4 { pixels += [0, 255, 0, 0] }
        let colours = pixels.withUnsafeBytes { Palette.colours(pixels: $0, bands: 4, hasAlpha: true) }
        #expect(colours == ["#fa0a0a", "#0a0afa"])
        // All transparent: the colours still count.
        let clear: [UInt8] = [0, 255, 0, 0, 0, 255, 0, 0]
        #expect(clear.withUnsafeBytes { Palette.colours(pixels: $0, bands: 4, hasAlpha: true) } == ["#00ff00"])
        let grey: [UInt8] = [128, 128, 7]
        #expect(grey.withUnsafeBytes { Palette.colours(pixels: $0, bands: 1, hasAlpha: false) } == ["#808080", "#070707"])
    }

    @Test("EXIF dates: the EXIF form only, zeros and junk give nil")
    func exifDates() {
        #expect(SourceHeader.exifDate("2021:07:14 09:30:00 (2021:07:14 09:30:00, ASCII, 20 components, 20 bytes)") == "2021-07-14T09:30:00")
        #expect(SourceHeader.exifDate("0000:00:00 00:00:00 (…)") == nil)
        #expect(SourceHeader.exifDate("                    ") == nil)
        #expect(SourceHeader.exifDate("2021-07-14 09:30:00") == nil)
        #expect(SourceHeader.exifDate("2021:13:14 09:30:00") == nil)
        #expect(SourceHeader.exifDate(nil) == nil)
    }

    @Test("WebP container: EXIF, XMP and ICCP chunks and their VP8X flags are removed")
    func webpContainer() throws {
        func chunk(_ name: String, _ payload: [UInt8]) -> [UInt8] {
            let size = UInt32(payload.count)
            return Array(name.utf8) + withUnsafeBytes(of: size.littleEndian, Array.init) + payload + (payload.count % 2 == 1 ? [0] : [])
        }
        let body = chunk("VP8X", [0x2C, 0, 0, 0, 0, 0, 0, 0, 0, 0]) + chunk("ICCP", [1, 2, 3]) + chunk("VP8 ", [9, 9, 9, 9])
            + chunk("EXIF", [4, 5]) + chunk("XMP ", [6])
        let file = Array("RIFF".utf8) + withUnsafeBytes(of: UInt32(body.count + 4).littleEndian, Array.init) + Array("WEBP".utf8) + body
        let stripped = try #require(WebPContainer.removingMetadata(from: Data(file)))
        let expectedBody = chunk("VP8X", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) + chunk("VP8 ", [9, 9, 9, 9])
        let expected = Array("RIFF".utf8) + withUnsafeBytes(of: UInt32(expectedBody.count + 4).littleEndian, Array.init)
            + Array("WEBP".utf8) + expectedBody
        #expect([UInt8](stripped) == expected)
        #expect(WebPContainer.removingMetadata(from: Data("not a webp".utf8)) == nil)
    }

    /// A 2×2 RGB PNG, red with one blue pixel (made with Pillow).
    static let tinyPNG: [UInt8] = [
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
        0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xFD, 0xD4, 0x9A,
        0x73, 0x00, 0x00, 0x00, 0x16, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xFC, 0xCF, 0xC0, 0xC0,
        0xC0, 0xC0, 0xC0, 0xF0, 0x9F, 0x81, 0x81, 0x81, 0xE1, 0x3F, 0x00, 0x14, 0x08, 0x02, 0xFF, 0xFF,
        0x31, 0x15, 0xF3, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

/// A fresh folder, removed with its contents when the value goes away.
final class TemporaryFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-imaging-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}
