public import DerivationFormat
import Foundation
internal import CVips
import Synchronization

/// Makes the derivatives of one ingested file with libvips (DESIGN.md §4).
///
/// For a file libvips recognises as a photo format it writes, under the derivation folder:
///
///     preview/<stem>-preview.<ext>   browser-safe format of the original, longest edge ≤ 2048
///     low/<stem>-w320.webp           320 px wide
///     high/<stem>-w768.webp          768 px wide
///     high/<stem>-w1280.webp         1280 px wide
///
/// Every one is made straight from the file with `vips_thumbnail`, which asks the decoder
/// to shrink while loading (JPEG decodes at 1/2, 1/4 or 1/8 scale, WebP and HEIF have
/// their own ways), so a 24-megapixel JPEG is never fully decoded for a 320-pixel copy and
/// memory stays near the output size. Then, for all four:
/// - never enlarged (`size` DOWN): a 200-pixel-wide original gives a 200-pixel "w320";
/// - turned upright by the EXIF orientation (the thumbnail does it and drops the tag);
/// - sRGB: files with an ICC profile are converted through it with an sRGB export profile;
///   CMYK files without one are read through libvips's built-in CMYK profile; RGB files
///   without one are taken to be sRGB already, as browsers do;
/// - no metadata at all (`strip`): no EXIF (location, camera serial), no ICC;
/// - alpha kept in WebP, PNG and GIF, flattened onto white for JPEG;
/// - the first frame of an animation (thumbnails load one page unless told otherwise);
/// - decoder damage fails the derivation (`fail_on` ERROR, which includes truncation)
///   instead of producing a half-grey picture.
///
/// Hostile input is expected (anything can be dropped into `incoming/`): libvips's
/// "untrusted" loaders — ImageMagick, and others not fuzzed for hostile input — are
/// blocked at start-up, and a file is only handed to a loader that recognised its first
/// bytes. The daemon runs derivations in child processes (`ncfs-derive`), so a decoder
/// crash or a pathological image costs one child, not the mount.
public enum ImageDeriver {
    /// Loader families ncfs makes derivatives of. Other formats libvips recognises (PDF,
    /// SVG, FITS, raw pixel formats…) are documents or data, and are kept without
    /// derivatives like any other file.
    public static let derivedFormats: Set<String> = ["jpeg", "png", "webp", "gif", "tiff", "heif", "jxl", "jp2k"]

    /// libvips is process-wide state: started once, and its error buffer is shared by all
    /// threads. The mutex guards the started flag and serialises derivations so that one
    /// derivation's error text cannot end up in another's result.
    static let started = Mutex(false)

    /// Starts libvips for this process; later calls only change `concurrency`.
    ///
    /// - Parameter concurrency: libvips worker threads per image. 1 by default: the daemon
    ///   runs several `ncfs-derive` processes side by side, which uses cores better than
    ///   threads inside one small image pipeline, and keeps each process's memory low.
    public static func initialize(concurrency: Int = 1) throws(ImagingError) {
        try started.withLock { (isStarted: inout Bool) throws(ImagingError) in
            try start(&isStarted)
            vips_concurrency_set(Int32(max(1, concurrency)))
        }
    }

    static func start(_ isStarted: inout Bool) throws(ImagingError) {
        guard !isStarted else { return }
        guard ncfs_vips_init("ncfs") == 0 else {
            throw .startFailed(Vips.takeError("vips_init failed"))
        }
        vips_block_untrusted_set(1)
        // Each file is opened once per derivative and never again: the operation cache
        // would only hold decoded images and open files that are not reused.
        vips_cache_set_max(0)
        vips_cache_set_max_mem(0)
        vips_cache_set_max_files(0)
        vips_concurrency_set(1)
        isStarted = true
    }

    /// Derives `source` into `folder` (see the type's documentation), naming outputs after
    /// `stem`. Starts libvips with default settings if `initialize` was not called.
    ///
    /// Problems with the picture are reported in the result (`notImage`, `error`), never
    /// thrown; what is thrown is the environment: an unreadable source, a folder that cannot
    /// be written, a stem that is not a plain file name.
    public static func derive(source: URL, stem: String, into folder: URL,
                              options: DerivationOptions = DerivationOptions()) throws(ImagingError) -> DerivationResult {
        guard !stem.isEmpty, !stem.contains("/"), stem != ".", stem != "..", !stem.contains("\0") else {
            throw .invalidStem(stem)
        }
        return try started.withLock { (isStarted: inout Bool) throws(ImagingError) -> DerivationResult in
            try start(&isStarted)
            return try Derivation(source: source, stem: stem, folder: folder, options: options).run()
        }
    }

    /// "8.14.1".
    public static var libvipsVersion: String { Vips.version }
}

/// Why a derivation could not be attempted. Picture problems are not errors: they are
/// reported in `DerivationResult`.
public enum ImagingError: Error, CustomStringConvertible, Sendable, Equatable {
    case startFailed(String)
    case unreadableSource(path: String, reason: String)
    case unwritableFolder(path: String, reason: String)
    case invalidStem(String)

    public var description: String {
        switch self {
        case .startFailed(let reason): "libvips could not start: \(reason)"
        case .unreadableSource(let path, let reason): "cannot read \(path): \(reason)"
        case .unwritableFolder(let path, let reason): "cannot write into \(path): \(reason)"
        case .invalidStem(let stem): "stem \"\(stem)\" is not a plain file name"
        }
    }
}
