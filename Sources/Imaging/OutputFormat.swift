internal import CVips

/// The encodings derivatives are written in, and which one a preview gets.
enum OutputFormat: Sendable {
    case jpeg, png, webp, gif

    /// Browsers show JPEG, PNG, WebP and GIF as they are; everything else (TIFF, HEIC,
    /// AVIF — not shown by every browser —, JPEG XL, JPEG 2000) previews as JPEG. A GIF
    /// previews as GIF (its first frame) when this libvips can write GIF, else as PNG, which
    /// keeps its transparency.
    static func preview(forLoaderFamily family: String) -> OutputFormat {
        switch family {
        case "jpeg": .jpeg
        case "png": .png
        case "webp": .webp
        case "gif": Vips.has("gifsave") ? .gif : .png
        default: .jpeg
        }
    }

    var fileExtension: String {
        switch self {
        case .jpeg: "jpg"
        case .png: "png"
        case .webp: "webp"
        case .gif: "gif"
        }
    }

    var mimeType: String {
        switch self {
        case .jpeg: "image/jpeg"
        case .png: "image/png"
        case .webp: "image/webp"
        case .gif: "image/gif"
        }
    }

    /// Encodes `image` to `path` without metadata. JPEG cannot hold alpha, so transparent
    /// pixels are flattened onto white first (libvips would otherwise drop the alpha band
    /// and show what was under it, often black).
    func save(_ image: VipsImage, to path: String, quality: DerivationOptions.Quality) throws(Vips.Failure) {
        switch self {
        case .jpeg:
            var source = image
            if image.hasAlpha {
                var flat: UnsafeMutablePointer<CVips.VipsImage>?
                try Vips.check(ncfs_vips_flatten_white(image.pointer, &flat), "flattening alpha failed")
                source = try Vips.image(flat, "flattening alpha failed")
            }
            try Vips.check(ncfs_vips_jpegsave(source.pointer, path, Int32(quality.jpeg)), "JPEG encoding failed")
        case .webp:
            try Vips.check(ncfs_vips_webpsave(image.pointer, path, Int32(quality.webp)), "WebP encoding failed")
            try WebPContainer.removeMetadata(fileAt: path)
        case .png:
            try Vips.check(ncfs_vips_pngsave(image.pointer, path), "PNG encoding failed")
        case .gif:
            try Vips.check(ncfs_vips_gifsave(image.pointer, path), "GIF encoding failed")
        }
    }
}
