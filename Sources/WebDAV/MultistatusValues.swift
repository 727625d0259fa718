import Foundation

/// Conversions from the raw text of a multistatus element to typed values. They work on bytes
/// because a 10,000-entry listing has ~100,000 values and building a `String` first for a number
/// or a date is most of the cost. Unparseable values read as nil ("unknown"), never as zero.
enum MultistatusValues {
    /// Strips XML whitespace at both ends (libxml2 has already turned CR LF into LF).
    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, isSpace(first) { slice.removeFirst() }
        while let last = slice.last, isSpace(last) { slice.removeLast() }
        return slice
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// An optionally signed decimal integer, nothing else around it.
    static func int64(_ bytes: ArraySlice<UInt8>) -> Int64? {
        var slice = bytes
        var negative = false
        if let sign = slice.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            slice.removeFirst()
        }
        guard !slice.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in slice {
            guard let digit = digit(byte) else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = negative
                ? shifted.subtractingReportingOverflow(Int64(digit))
                : shifted.addingReportingOverflow(Int64(digit))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    /// `d:getetag` without a weak `W/` prefix and without surrounding quotes. Nextcloud's trash
    /// items carry an unquoted integer, which is kept as it is.
    static func etag(_ bytes: ArraySlice<UInt8>) -> String? {
        var slice = bytes
        if slice.starts(with: "W/".utf8) { slice.removeFirst(2) }
        if slice.count >= 2, slice.first == UInt8(ascii: "\""), slice.last == UInt8(ascii: "\"") {
            slice = slice.dropFirst().dropLast()
        }
        return slice.isEmpty ? nil : string(slice)
    }

    /// Text as a String; libxml2 hands out valid UTF-8 only, so decoding cannot lose anything.
    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// The status code of an HTTP status line such as `HTTP/1.1 404 Not Found`.
    static func statusCode(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard bytes.starts(with: "HTTP/".utf8), let space = bytes.firstIndex(of: 0x20) else { return nil }
        let rest = bytes[(space + 1)...]
        let code = rest.prefix(while: { digit($0) != nil })
        guard code.count == 3, code.endIndex == rest.endIndex || rest[code.endIndex] == 0x20 else { return nil }
        return code.reduce(0) { $0 * 10 + Int(digit($1) ?? 0) }
    }

    /// An RFC 1123 date as HTTP and WebDAV use it: `Tue, 04 Nov 2025 10:11:12 GMT`. The weekday
    /// is optional and not checked (it is redundant); the zone must be GMT (or UTC/`+0000`).
    /// Hand-written, reading fields in place, because `DateFormatter` costs tens of microseconds
    /// per call and a listing has one date per entry.
    static func httpDate(_ bytes: ArraySlice<UInt8>) -> Date? {
        var cursor = bytes.startIndex
        if let comma = bytes.prefix(12).firstIndex(of: UInt8(ascii: ",")) { cursor = comma + 1 }

        /// The next run of bytes up to a space (or `:` inside the time), skipping leading spaces.
        func field(until separator: UInt8) -> ArraySlice<UInt8> {
            while cursor < bytes.endIndex, bytes[cursor] == 0x20 { cursor += 1 }
            let start = cursor
            while cursor < bytes.endIndex, bytes[cursor] != separator, bytes[cursor] != 0x20 { cursor += 1 }
            let run = bytes[start..<cursor]
            if cursor < bytes.endIndex, bytes[cursor] == separator { cursor += 1 }
            return run
        }

        let colon = UInt8(ascii: ":")
        guard let day = number(field(until: 0x20), digits: 1...2), (1...31).contains(day),
              let month = month(field(until: 0x20)),
              let year = number(field(until: 0x20), digits: 4...4),
              let hour = number(field(until: colon), digits: 2...2), hour < 24,
              let minute = number(field(until: colon), digits: 2...2), minute < 60,
              let second = number(field(until: 0x20), digits: 2...2), second <= 60 else { return nil }
        let zone = field(until: 0x20)
        guard zone.elementsEqual("GMT".utf8) || zone.elementsEqual("UTC".utf8) || zone.elementsEqual("+0000".utf8),
              field(until: 0x20).isEmpty else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// Latest second `httpDate` can produce (9999-12-31T23:59:59Z); seconds since 1970 are
    /// taken only within the same span either side of 1970.
    static let maxUnixTime: Int64 = 253_402_300_799

    /// Seconds since 1970 as a Date, nil beyond `maxUnixTime` either way. Without the bound a
    /// value such as Int64.max becomes a Date whose `Int64(timeIntervalSince1970)` traps (the
    /// Double rounds up past Int64.max) wherever it is turned back into whole seconds.
    static func unixTime(_ seconds: Int64) -> Date? {
        (-maxUnixTime...maxUnixTime).contains(seconds) ? Date(timeIntervalSince1970: TimeInterval(seconds)) : nil
    }

    private static func digit(_ byte: UInt8) -> UInt8? {
        (0x30...0x39).contains(byte) ? byte - 0x30 : nil
    }

    private static func number(_ bytes: ArraySlice<UInt8>, digits: ClosedRange<Int>) -> Int? {
        guard digits.contains(bytes.count) else { return nil }
        var value = 0
        for byte in bytes {
            guard let digit = digit(byte) else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }

    /// `Jan`…`Dec`, any case, as 1…12. The three letters are packed into one integer so the
    /// lookup is twelve integer compares.
    private static func month(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard bytes.count == 3 else { return nil }
        let key = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1 | 0x20) }
        return monthKeys.firstIndex(of: key).map { $0 + 1 }
    }

    private static let monthKeys: [UInt32] = ["jan", "feb", "mar", "apr", "may", "jun",
                                              "jul", "aug", "sep", "oct", "nov", "dec"].map {
        $0.utf8.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    private static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
