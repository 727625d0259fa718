internal import CVips

/// What the original's header says, read without decoding pixels.
struct SourceHeader {
    /// Loader family, "jpeg" for "jpegload".
    let format: String
    /// After EXIF orientation.
    let width: Int
    let height: Int
    let orientation: Int?
    let captureDate: String?
    /// The file embeds an ICC profile, so its pixels are converted through it to sRGB.
    /// Without one, libvips takes RGB as sRGB already and reads CMYK through its built-in
    /// CMYK profile; asking for an sRGB export there changes nothing but a warning.
    let needsColourManagement: Bool

    init(_ image: VipsImage, format: String) {
        self.format = format
        let orientation = image.int("orientation")
        self.orientation = orientation
        // Orientations 5–8 turn the picture by 90°: the stored rows become columns.
        let turned = (5...8).contains(orientation ?? 1)
        width = turned ? image.height : image.width
        height = turned ? image.width : image.height
        captureDate = Self.exifDate(image.text("exif-ifd2-DateTimeOriginal"))
            ?? Self.exifDate(image.text("exif-ifd0-DateTime"))
        needsColourManagement = image.has("icc-profile-data")
    }

    /// "2021:07:14 09:30:00 (2021:07:14 09:30:00, ASCII, 20 components, 20 bytes)" →
    /// "2021-07-14T09:30:00". Cameras without a set clock write zeros or blanks; those, and
    /// anything else not of the EXIF form, give nil.
    static func exifDate(_ text: String?) -> String? {
        guard let text else { return nil }
        let value = Array(text.prefix(19).utf8)
        let pattern = Array("dddd:dd:dd dd:dd:dd".utf8)
        guard value.count == pattern.count else { return nil }
        for (byte, expected) in zip(value, pattern) {
            let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            if expected == UInt8(ascii: "d") ? !isDigit : byte != expected { return nil }
        }
        let digits = { (range: Range<Int>) in Int(String(decoding: value[range], as: UTF8.self)) ?? 0 }
        let (month, day) = (digits(5..<7), digits(8..<10))
        guard digits(0..<4) > 0, (1...12).contains(month), (1...31).contains(day),
              digits(11..<13) < 24, digits(14..<16) < 60, digits(17..<19) < 61 else { return nil }
        var iso = value
        iso[4] = UInt8(ascii: "-")
        iso[7] = UInt8(ascii: "-")
        iso[10] = UInt8(ascii: "T")
        return String(decoding: iso, as: UTF8.self)
    }
}
