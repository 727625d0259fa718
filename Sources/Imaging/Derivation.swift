import DerivationFormat
import Foundation
internal import CVips
internal import SystemPackage

/// One run of `ImageDeriver.derive`: recognise the file, read its header, write the four
/// derivatives, take the palette. Runs under `ImageDeriver`'s lock, on one thread.
struct Derivation {
    let source: URL
    let stem: String
    let folder: URL
    let options: DerivationOptions

    /// `vips_thumbnail` needs a height; for the width-bound derivatives any height fits.
    private static let unbounded = 10_000_000  // VIPS_MAX_COORD
    private static let failOn = Int32(VIPS_FAIL_ON_ERROR.rawValue)

    /// One file to write.
    private struct Target {
        let kind: Derivative.Kind
        let subfolder: String
        let width: Int
        let height: Int
        let format: OutputFormat
    }

    func run() throws(ImagingError) -> DerivationResult {
        let opened = try SourceFile(source)
        defer { opened.close() }
        if opened.size == 0 {
            return DerivationResult(isImage: false, notImage: "empty file")
        }
        // Each loader checks the first bytes it needs; nothing else of the file is read, so
        // a 200 MB file of noise costs a few reads.
        guard let loader = vips_foreign_find_load(opened.vipsPath) else {
            Vips.discardError()
            return DerivationResult(isImage: false, notImage: "no image format recognised (libvips has no loader for these bytes)")
        }
        let format = Self.family(ofLoaderClass: loader)
        guard ImageDeriver.derivedFormats.contains(format) else {
            return DerivationResult(isImage: false, format: format,
                                    notImage: "libvips reads it as \(format), which is not a photo format ncfs derives")
        }

        let header: SourceHeader
        do {
            let image = try Vips.image(ncfs_vips_image_new_from_file(opened.vipsPath, Self.failOn), "the header could not be read")
            header = SourceHeader(image, format: format)
        } catch {
            return DerivationResult(isImage: true, format: format, error: error.description)
        }
        var result = DerivationResult(isImage: true, format: format, width: header.width, height: header.height,
                                      orientation: header.orientation, captureDate: header.captureDate)

        let targets = targets(previewFormat: OutputFormat.preview(forLoaderFamily: format))
        try prepareSubfolders(Set(targets.map(\.subfolder)))
        do {
            // The preview is decoded from the file once and kept in memory; each smaller size
            // is made from it when it is at least as wide as that size needs (never when the
            // preview's edge bound made it narrower, as for a tall panorama), so a format
            // without shrink-on-load (PNG, WebP, TIFF) is decoded once instead of four times.
            var decoded: VipsImage?
            for target in targets {
                let base = decoded.flatMap { $0.width >= min(target.width, header.width) ? $0 : nil }
                let (derivative, image) = try write(target, from: opened.vipsPath, base: base,
                                                    colourManaged: header.needsColourManagement)
                result.derivatives.append(derivative)
                if target.kind == .preview { decoded = image }
            }
        } catch {
            // All or nothing: a half set of derivatives would look like a complete one.
            for derivative in result.derivatives { unlink(url(of: derivative.relativePath).path) }
            result.derivatives = []
            result.error = error.description
            return result
        }
        if let smallest = result.derivatives.first(where: { $0.kind == .w320 }) {
            do {
                result.palette = try Palette.colours(ofFileAt: url(of: smallest.relativePath).path)
            } catch {
                // A palette is decoration; the derivatives are what matter.
                result.palette = []
            }
        }
        return result
    }

    /// "VipsForeignLoadJpegFile" → (operation "jpegload") → "jpeg".
    static func family(ofLoaderClass className: UnsafePointer<CChar>) -> String {
        guard let nickname = ncfs_vips_nickname_of_class(className) else { return String(cString: className) }
        let name = String(cString: nickname)
        return name.hasSuffix("load") ? String(name.dropLast(4)) : name
    }

    private func targets(previewFormat: OutputFormat) -> [Target] {
        [
            Target(kind: .preview, subfolder: "preview", width: options.previewMaxEdge, height: options.previewMaxEdge,
                   format: previewFormat),
            Target(kind: .w320, subfolder: "low", width: 320, height: Self.unbounded, format: .webp),
            Target(kind: .w768, subfolder: "high", width: 768, height: Self.unbounded, format: .webp),
            Target(kind: .w1280, subfolder: "high", width: 1280, height: Self.unbounded, format: .webp),
        ]
    }

    private func relativePath(of target: Target) -> String {
        "\(target.subfolder)/\(stem)-\(target.kind.rawValue).\(target.format.fileExtension)"
    }

    private func url(of relativePath: String) -> URL {
        folder.appendingPathComponent(relativePath, isDirectory: false)
    }

    private func prepareSubfolders(_ names: Set<String>) throws(ImagingError) {
        for name in names.sorted() {
            let subfolder = folder.appendingPathComponent(name, isDirectory: true)
            do {
                try FileManager.default.createDirectory(at: subfolder, withIntermediateDirectories: true)
            } catch {
                throw .unwritableFolder(path: subfolder.path, reason: error.localizedDescription)
            }
            guard access(subfolder.path, W_OK | X_OK) == 0 else {
                throw .unwritableFolder(path: subfolder.path, reason: Errno(rawValue: errno).description)
            }
        }
    }

    /// Thumbnails the source (or `base`, an already decoded, upright, sRGB image of it) for
    /// `target` and writes it under a temporary name, renamed into place when complete, so a
    /// reader never sees half a file. Returns the derivative and its pixels, held in memory.
    private func write(_ target: Target, from sourcePath: String, base: VipsImage?,
                       colourManaged: Bool) throws(Vips.Failure) -> (Derivative, VipsImage) {
        let relative = relativePath(of: target)
        let destination = url(of: relative)
        let temporary = destination.deletingLastPathComponent()
            .appendingPathComponent(".\(destination.lastPathComponent).part").path
        var thumbnail: UnsafeMutablePointer<CVips.VipsImage>?
        if let base {
            try Vips.check(ncfs_vips_thumbnail_image(base.pointer, &thumbnail, Int32(target.width), Int32(target.height)),
                           "thumbnail failed")
        } else {
            try Vips.check(ncfs_vips_thumbnail(sourcePath, &thumbnail, Int32(target.width), Int32(target.height),
                                               colourManaged ? "srgb" : nil, Self.failOn),
                           "thumbnail failed")
        }
        let lazy = try Vips.image(thumbnail, "thumbnail failed")
        // Computed once into memory: saving and the next thumbnails then read these pixels
        // instead of running the decode pipeline again.
        let image = try Vips.image(vips_image_copy_memory(lazy.pointer), "thumbnail failed")
        do {
            try target.format.save(image, to: temporary, quality: options.quality)
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, destination.path) == 0 else {
            let reason = Errno(rawValue: errno).description
            unlink(temporary)
            throw Vips.Failure(description: "renaming \(temporary) into place failed: \(reason)")
        }
        var info = stat()
        let bytes = stat(destination.path, &info) == 0 ? Int(info.st_size) : 0
        return (Derivative(kind: target.kind, relativePath: relative, width: image.width, height: image.height,
                           bytes: bytes, mimeType: target.format.mimeType), image)
    }
}

/// The source, held open for the derivation.
///
/// libvips reads load options from a trailing "[…]" of a file name ("a.jpg[shrink=2]") and
/// has no way to escape it, so a file whose name ends in "]" is handed to libvips as
/// /proc/self/fd/N of the descriptor held here. Loaders recognise files by their bytes,
/// not their names, so nothing else changes.
private struct SourceFile {
    let vipsPath: String
    let size: Int
    private let descriptor: Int32

    init(_ url: URL) throws(ImagingError) {
        let path = url.path
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .unreadableSource(path: path, reason: Errno(rawValue: errno).description)
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let reason = Errno(rawValue: errno).description
            Glibc.close(descriptor)
            throw .unreadableSource(path: path, reason: reason)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            Glibc.close(descriptor)
            throw .unreadableSource(path: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        vipsPath = path.hasSuffix("]") ? "/proc/self/fd/\(descriptor)" : path
    }

    func close() { Glibc.close(descriptor) }
}
