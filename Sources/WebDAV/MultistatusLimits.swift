/// Bounds on what one multistatus body may cost. The defaults are far above anything a
/// Nextcloud listing produces and exist so a hostile or broken server cannot make the daemon
/// allocate without end.
public struct MultistatusLimits: Sendable {
    /// Total body size. 256 MiB is roughly a million entries with the listing property set.
    public var maxBytes: Int
    /// `d:response` elements in one body.
    public var maxResponses: Int
    /// Bytes of one text value (an href, an ETag, a property). Real values are well under 4 KiB
    /// (Nextcloud paths are capped at 4000 bytes); 64 KiB leaves room for percent-encoding.
    public var maxTextLength: Int
    /// Element nesting. A multistatus needs 6 levels; 64 leaves room for unknown properties
    /// with structure while staying well under libxml2's own 256.
    public var maxDepth: Int

    public init(maxBytes: Int = 256 << 20, maxResponses: Int = 1_000_000,
                maxTextLength: Int = 64 << 10, maxDepth: Int = 64) {
        self.maxBytes = maxBytes
        self.maxResponses = maxResponses
        self.maxTextLength = maxTextLength
        self.maxDepth = maxDepth
    }
}
