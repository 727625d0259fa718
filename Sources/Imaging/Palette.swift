internal import CVips

/// The dominant colours of a picture, for the catalog (pindeck shows them as swatches).
///
/// The method is deliberately simple and deterministic:
/// 1. Shrink the picture so it fits 64×64 (4,096 pixels: enough to weigh large areas, cheap
///    to count; `derive` makes it from the 320-pixel derivative, not the original).
/// 2. Put every pixel that is at least half opaque into one of 512 boxes, by the top three
///    bits of red, green and blue (an 8×8×8 grid over the RGB cube). When no pixel is
///    half opaque (a faint overlay), every pixel that is not fully transparent counts, and
///    when all are, all do: a picture always has a colour.
/// 3. Rank boxes by how many pixels fell in (ties by box number). A box's colour is the
///    mean of its pixels, not the box centre, so a flat colour comes back exactly.
/// 4. Take up to five, skipping any colour closer than 32 (Euclidean, in 0–255 RGB) to one
///    already taken, so a gradient that spans neighbouring boxes does not fill the palette
///    with near-copies of itself.
enum Palette {
    static let thumbnailEdge = 64
    static let limit = 5
    static let minimumDistance = 32

    /// Colours of the image file at `path` as "#rrggbb", most common first.
    static func colours(ofFileAt path: String) throws(Vips.Failure) -> [String] {
        var thumbnail: UnsafeMutablePointer<CVips.VipsImage>?
        try Vips.check(ncfs_vips_thumbnail(path, &thumbnail, Int32(thumbnailEdge), Int32(thumbnailEdge), nil,
                                           Int32(VIPS_FAIL_ON_ERROR.rawValue)), "palette thumbnail failed")
        let small = try Vips.image(thumbnail, "palette thumbnail failed")
        var cast: UnsafeMutablePointer<CVips.VipsImage>?
        try Vips.check(ncfs_vips_cast_uchar(small.pointer, &cast), "palette cast failed")
        let bytes = try Vips.image(cast, "palette cast failed")
        var size = 0
        guard let memory = vips_image_write_to_memory(bytes.pointer, &size) else {
            throw Vips.Failure(description: Vips.takeError("palette pixels could not be read"))
        }
        defer { g_free(memory) }
        return colours(pixels: UnsafeRawBufferPointer(start: memory, count: size),
                       bands: bytes.bands, hasAlpha: bytes.hasAlpha)
    }

    /// Colours of interleaved 8-bit pixels: 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA)
    /// bands; with more, the first three are RGB and alpha is last when `hasAlpha`.
    static func colours(pixels: UnsafeRawBufferPointer, bands: Int, hasAlpha: Bool) -> [String] {
        guard bands > 0 else { return [] }
        for threshold in hasAlpha ? [128, 1, 0] : [0] {
            let found = colours(pixels: pixels, bands: bands, hasAlpha: hasAlpha, minimumAlpha: threshold)
            if !found.isEmpty { return found }
        }
        return []
    }

    private static func colours(pixels: UnsafeRawBufferPointer, bands: Int, hasAlpha: Bool, minimumAlpha: Int) -> [String] {
        var counts = [Int](repeating: 0, count: 512)
        var sums = [(r: Int, g: Int, b: Int)](repeating: (0, 0, 0), count: 512)
        var offset = 0
        while offset + bands <= pixels.count {
            defer { offset += bands }
            if hasAlpha, Int(pixels[offset + bands - 1]) < minimumAlpha { continue }
            let colourBands = hasAlpha ? bands - 1 : bands
            let r = Int(pixels[offset])
            let g = colourBands >= 3 ? Int(pixels[offset + 1]) : r
            let b = colourBands >= 3 ? Int(pixels[offset + 2]) : r
            let box = (r >> 5) << 6 | (g >> 5) << 3 | b >> 5
            counts[box] += 1
            sums[box].r += r
            sums[box].g += g
            sums[box].b += b
        }
        let ranked = counts.indices.filter { counts[$0] > 0 }.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        var chosen: [(r: Int, g: Int, b: Int)] = []
        for box in ranked where chosen.count < limit {
            let n = counts[box]
            // Rounded mean of the box's pixels.
            let mean = ((sums[box].r + n / 2) / n, (sums[box].g + n / 2) / n, (sums[box].b + n / 2) / n)
            let tooClose = chosen.contains { taken in
                let (dr, dg, db) = (taken.r - mean.0, taken.g - mean.1, taken.b - mean.2)
                return dr * dr + dg * dg + db * db < minimumDistance * minimumDistance
            }
            if !tooClose { chosen.append(mean) }
        }
        return chosen.map { hex($0.r, $0.g, $0.b) }
    }

    static func hex(_ r: Int, _ g: Int, _ b: Int) -> String {
        let digits = Array("0123456789abcdef")
        return "#" + String([r, g, b].flatMap { [digits[$0 >> 4], digits[$0 & 15]] })
    }
}
