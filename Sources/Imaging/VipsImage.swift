internal import CVips

/// One owned reference to a libvips image, released when the value goes away.
///
/// Images are made, read and dropped on the thread that runs one derivation and are never
/// handed to another, so the class is deliberately not `Sendable`.
final class VipsImage {
    let pointer: UnsafeMutablePointer<CVips.VipsImage>

    /// Takes over the reference a libvips constructor returned.
    init(taking pointer: UnsafeMutablePointer<CVips.VipsImage>) {
        self.pointer = pointer
    }

    deinit { ncfs_vips_image_unref(pointer) }

    var width: Int { Int(vips_image_get_width(pointer)) }
    var height: Int { Int(vips_image_get_height(pointer)) }
    var bands: Int { Int(vips_image_get_bands(pointer)) }
    var hasAlpha: Bool { vips_image_hasalpha(pointer) != 0 }
    /// libvips's name for the colour space: "srgb", "cmyk", "b-w", …
    var interpretation: String {
        let value = Int32(vips_image_get_interpretation(pointer).rawValue)
        return String(cString: vips_enum_nick(vips_interpretation_get_type(), value))
    }

    func has(_ field: String) -> Bool { vips_image_get_typeof(pointer, field) != 0 }

    func int(_ field: String) -> Int? {
        guard has(field) else { return nil }
        var value: Int32 = 0
        guard vips_image_get_int(pointer, field, &value) == 0 else {
            Vips.discardError()
            return nil
        }
        return Int(value)
    }

    /// Any field rendered as text, as `vipsheader -f` shows it. EXIF fields read
    /// "2021:07:14 09:30:00 (2021:07:14 09:30:00, ASCII, 20 components, 20 bytes)".
    func text(_ field: String) -> String? {
        guard has(field) else { return nil }
        var value: UnsafeMutablePointer<CChar>?
        guard vips_image_get_as_string(pointer, field, &value) == 0, let value else {
            Vips.discardError()
            return nil
        }
        defer { g_free(value) }
        return String(cString: value)
    }

    /// Names of every metadata field the image carries (EXIF, ICC, XMP, loader facts).
    var fieldNames: [String] {
        guard let fields = vips_image_get_fields(pointer) else { return [] }
        defer { g_strfreev(fields) }
        var names: [String] = []
        var index = 0
        while let name = fields[index] {
            names.append(String(cString: name))
            index += 1
        }
        return names
    }
}
