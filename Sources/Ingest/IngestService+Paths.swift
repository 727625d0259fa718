import Foundation
import WebDAV

/// Where an item's files go: its date folders, its work folder, the names of its originals
/// and derivatives, and the URLs the catalog records.
extension IngestService {
    func originalFolder(_ item: IngestItem) -> String {
        settings.prefix + "/" + (item.day ?? "") + "/original"
    }

    func workFolder(_ item: IngestItem) -> URL {
        settings.workDirectory.appendingPathComponent(String(item.id))
    }

    /// `YYYY/MM_DD` of `date` in `zone`.
    static func dayPath(_ date: Date, in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d/%02d_%02d", c.year ?? 1970, c.month ?? 1, c.day ?? 1)
    }

    /// The name without its extension (derivatives are named after it).
    static func stem(_ name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }

    /// "IMG_1.jpg", 2 → "IMG_1 (2).jpg"; names without an extension (or dotfiles) get the
    /// suffix at the end.
    static func numbered(_ name: String, _ n: Int) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "\(name) (\(n))" }
        return "\(name[..<dot]) (\(n))\(name[dot...])"
    }

    /// `YYYY/MM_DD` of an EXIF capture time ("2021-07-14T09:30:00"): the day the camera's
    /// clock showed. EXIF times carry no zone in most files, so no zone is applied — a photo
    /// taken at 23:30 abroad stays on the day it was taken. nil for anything else (a camera
    /// with an unset clock writes "0000-00-00…").
    static func captureDay(_ text: String) -> String? {
        let digits = Array(text.utf8.prefix(10))
        guard digits.count == 10, digits[4] == UInt8(ascii: "-"), digits[7] == UInt8(ascii: "-"),
              let year = Int(String(decoding: digits[0..<4], as: UTF8.self)), (1900...2999).contains(year),
              let month = Int(String(decoding: digits[5..<7], as: UTF8.self)), (1...12).contains(month),
              let day = Int(String(decoding: digits[8..<10], as: UTF8.self)), (1...31).contains(day) else { return nil }
        return String(format: "%04d/%02d_%02d", year, month, day)
    }

    /// The public URL of `path` through the share, or its WebDAV URL without one.
    func url(for path: String) -> String {
        guard let share = settings.publicShare else { return store.location.url(path) }
        let root = share.sharePath.isEmpty ? "" : share.sharePath + "/"
        guard path.hasPrefix(root) else { return store.location.url(path) }
        let relative = path.dropFirst(root.count).split(separator: "/").map { component in
            String(component).addingPercentEncoding(withAllowedCharacters: Self.pathCharacters) ?? String(component)
        }.joined(separator: "/")
        return share.base + "/public.php/dav/files/" + share.token + "/" + relative
    }

    private static let pathCharacters: CharacterSet = {
        // RFC 3986 pchar, ASCII only (CharacterSet.alphanumerics would let "é" through raw).
        CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@")
    }()
}
