/// What `ImageDeriver.derive` found out about one file and what it wrote.
///
/// This is the JSON contract between `ncfs-derive` and the ingest pipeline: field names are
/// stable, and absent values are written as `null` rather than left out, so a reader can
/// tell "no capture date" from "an older writer that did not know the field".
///
/// Exactly one of three outcomes holds:
/// - derived: `isImage`, `error` and `notImage` nil, four `derivatives`;
/// - corrupt: `isImage`, `error` says what libvips reported, no `derivatives` (a truncated
///   JPEG — the original is still the user's data and is kept);
/// - not an image: `isImage` false, `notImage` says why (empty, no loader recognised the
///   bytes, or a format ncfs does not derive such as PDF), no `derivatives`.
public struct DerivationResult: Codable, Sendable, Equatable {
    /// A format libvips can decode and ncfs derives (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF,
    /// JPEG XL, JPEG 2000), whether or not decoding then succeeded.
    public var isImage: Bool
    /// The libvips loader family: "jpeg", "png", "webp", "gif", "tiff", "heif" (HEIC and
    /// AVIF), "jxl", "jp2k"; also set for recognised formats ncfs does not derive ("pdf",
    /// "svg"); nil when no loader recognised the file.
    public var format: String?
    /// Size of the original as a viewer shows it, i.e. after EXIF orientation; the first
    /// frame of an animation.
    public var width: Int?
    public var height: Int?
    /// The EXIF orientation tag (1…8), nil when the file has none.
    public var orientation: Int?
    /// EXIF DateTimeOriginal, else DateTime, as "YYYY-MM-DDTHH:MM:SS" in the camera's
    /// unstated local time (EXIF 2.3 has no zone in these fields).
    public var captureDate: String?
    /// Up to five dominant colours, "#rrggbb", most common first. See `Palette`.
    public var palette: [String]
    /// In the order preview, w320, w768, w1280.
    public var derivatives: [Derivative]
    /// Why deriving an image failed, in libvips's words.
    public var error: String?
    /// Why the file is not treated as an image.
    public var notImage: String?

    public init(isImage: Bool, format: String? = nil, width: Int? = nil, height: Int? = nil,
                orientation: Int? = nil, captureDate: String? = nil, palette: [String] = [],
                derivatives: [Derivative] = [], error: String? = nil, notImage: String? = nil) {
        self.isImage = isImage
        self.format = format
        self.width = width
        self.height = height
        self.orientation = orientation
        self.captureDate = captureDate
        self.palette = palette
        self.derivatives = derivatives
        self.error = error
        self.notImage = notImage
    }

    enum CodingKeys: String, CodingKey {
        case isImage, format, width, height, orientation, captureDate, palette, derivatives, error, notImage
    }

    /// Writes every key, with `null` for absent values (synthesised encoding would omit them).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(isImage, forKey: .isImage)
        try container.encode(format, forKey: .format)
        try container.encode(width, forKey: .width)
        try container.encode(height, forKey: .height)
        try container.encode(orientation, forKey: .orientation)
        try container.encode(captureDate, forKey: .captureDate)
        try container.encode(palette, forKey: .palette)
        try container.encode(derivatives, forKey: .derivatives)
        try container.encode(error, forKey: .error)
        try container.encode(notImage, forKey: .notImage)
    }
}

/// One file written under the derivation folder.
public struct Derivative: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// `preview/<stem>-preview.<ext>`: the original's format when browsers show it,
        /// else JPEG; longest edge bounded by `DerivationOptions.previewMaxEdge`.
        case preview
        /// `low/<stem>-w320.webp`, `high/<stem>-w768.webp`, `high/<stem>-w1280.webp`:
        /// that many pixels wide, or the original's width when it is narrower.
        case w320, w768, w1280
    }

    public var kind: Kind
    /// Relative to the derivation folder, "/"-separated: "high/IMG_1234-w768.webp".
    public var relativePath: String
    public var width: Int
    public var height: Int
    public var bytes: Int
    public var mimeType: String

    public init(kind: Kind, relativePath: String, width: Int, height: Int, bytes: Int, mimeType: String) {
        self.kind = kind
        self.relativePath = relativePath
        self.width = width
        self.height = height
        self.bytes = bytes
        self.mimeType = mimeType
    }
}
