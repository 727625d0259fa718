import Foundation
internal import CVips

/// The one place libvips status codes become Swift errors.
///
/// libvips reports failures as a non-zero return plus text appended to a process-wide error
/// buffer. Every failing call is followed by `takeError`, which reads and clears that buffer
/// so one derivation's message never leaks into the next. The buffer is shared by all
/// threads, which is why `ImageDeriver` runs one derivation at a time per process.
enum Vips {
    /// A libvips failure with the text libvips gave for it.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Throws the buffered libvips error when `status` is non-zero.
    static func check(_ status: Int32, _ what: @autoclosure () -> String) throws(Failure) {
        if status != 0 { throw Failure(description: takeError(what())) }
    }

    /// Unwraps a constructor's result, or throws the buffered libvips error.
    static func image(_ pointer: UnsafeMutablePointer<CVips.VipsImage>?, _ what: @autoclosure () -> String) throws(Failure) -> VipsImage {
        guard let pointer else { throw Failure(description: takeError(what())) }
        return VipsImage(taking: pointer)
    }

    /// The buffered error text (trimmed, lines joined with "; "), or `fallback` when
    /// libvips left none; the buffer is cleared either way.
    static func takeError(_ fallback: String) -> String {
        let raw = String(cString: vips_error_buffer())
        vips_error_clear()
        let lines = raw.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.isEmpty ? fallback : lines.joined(separator: "; ")
    }

    /// Clears the buffer after a failure that is expected and handled (an absent field).
    static func discardError() { vips_error_clear() }

    /// Whether this libvips build has the named operation ("gifsave", "heifload").
    static func has(_ nickname: String) -> Bool { ncfs_vips_has_operation(nickname) != 0 }

    /// "8.14.1".
    static var version: String { String(cString: vips_version_string()) }
}
