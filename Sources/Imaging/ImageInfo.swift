import Foundation
internal import CVips

/// What libvips reads from an image file, decoded: for checking derivatives (tests, and
/// later repair tools that verify what is on the server).
public struct ImageInfo: Sendable, Equatable {
    /// Loader family, as in `DerivationResult.format`.
    public var format: String
    public var width: Int
    public var height: Int
    public var bands: Int
    /// libvips's colour space name: "srgb", "b-w", "cmyk", …
    public var interpretation: String
    public var hasAlpha: Bool
    /// Pages or frames in the file (1 for a still picture).
    public var pages: Int
    /// Every metadata field libvips found ("exif-data", "icc-profile-data", "xmp-data", …).
    public var metadataFields: [String]
}

extension ImageDeriver {
    /// Reads the header of an image file. Throws `unreadableSource` when libvips cannot.
    public static func inspect(_ url: URL) throws(ImagingError) -> ImageInfo {
        try withImage(url) { image, format in
            ImageInfo(format: format, width: image.width, height: image.height, bands: image.bands,
                      interpretation: image.interpretation, hasAlpha: image.hasAlpha,
                      pages: image.int("n-pages") ?? 1, metadataFields: image.fieldNames)
        }
    }

    /// The samples of one pixel of the first page, one value per band (0…255 for 8-bit).
    /// Decodes the file as far as needed, so damage shows up as a thrown error.
    public static func pixel(in url: URL, x: Int, y: Int) throws(ImagingError) -> [Double] {
        try withImage(url) { (image, _) throws(ImagingError) -> [Double] in
            var values: UnsafeMutablePointer<Double>?
            var count: Int32 = 0
            guard ncfs_vips_getpoint(image.pointer, &values, &count, Int32(x), Int32(y)) == 0, let values else {
                throw .unreadableSource(path: url.path, reason: Vips.takeError("reading pixel (\(x), \(y)) failed"))
            }
            defer { g_free(values) }
            return Array(UnsafeBufferPointer(start: values, count: Int(count)))
        }
    }

    private static func withImage<T>(_ url: URL, _ body: (VipsImage, String) throws(ImagingError) -> T) throws(ImagingError) -> T {
        try started.withLock { (isStarted: inout Bool) throws(ImagingError) -> T in
            try start(&isStarted)
            let path = url.path
            guard let loader = vips_foreign_find_load(path) else {
                throw .unreadableSource(path: path, reason: Vips.takeError("not an image libvips recognises"))
            }
            let format = Derivation.family(ofLoaderClass: loader)
            guard let pointer = ncfs_vips_image_new_from_file(path, Int32(VIPS_FAIL_ON_ERROR.rawValue)) else {
                throw .unreadableSource(path: path, reason: Vips.takeError("libvips could not open it"))
            }
            return try body(VipsImage(taking: pointer), format)
        }
    }
}
