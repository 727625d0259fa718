/// How `ImageDeriver.derive` sizes and encodes derivatives.
public struct DerivationOptions: Sendable, Equatable {
    /// Encoder quality settings (libvips `Q`, 1–100).
    public struct Quality: Sendable, Equatable {
        /// 85: a usual web setting for photos; artefacts are hard to see at viewing size.
        public var jpeg = 85
        /// 80: a little above libvips's default (75), since these are the sizes people look at.
        public var webp = 80
        public init() {}
    }

    /// Longest edge of `preview/…` in pixels; smaller originals keep their size.
    public var previewMaxEdge: Int
    public var quality: Quality

    public init(previewMaxEdge: Int = 2048, quality: Quality = Quality()) {
        self.previewMaxEdge = previewMaxEdge
        self.quality = quality
    }
}
