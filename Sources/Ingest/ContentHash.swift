import CCrypto
import Foundation
import Glibc
internal import SystemPackage

/// SHA-256 of a file, read in 1 MiB blocks (OpenSSL's EVP digest): the item's content identity
/// (duplicates) and the `OC-Checksum` its upload carries.
enum ContentHash {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The lowercase hex digest and the number of bytes read.
    static func sha256(ofFile path: String) throws -> (hex: String, size: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "opening \(path): \(Errno(rawValue: errno).description)") }
        defer { close(fd) }
        guard let context = EVP_MD_CTX_new() else { throw Failure(description: "EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else { throw Failure(description: "EVP_DigestInit_ex failed") }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var size: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "reading \(path): \(Errno(rawValue: errno).description)")
            }
            if n == 0 { break }
            size += Int64(n)
            guard buffer.withUnsafeBytes({ EVP_DigestUpdate(context, $0.baseAddress, n) }) == 1 else {
                throw Failure(description: "EVP_DigestUpdate failed")
            }
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1 else { throw Failure(description: "EVP_DigestFinal_ex failed") }
        return (digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined(), size)
    }
}
