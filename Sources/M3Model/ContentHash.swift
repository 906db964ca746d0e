// Content digests of model files (XXH3-128) and the zip CRC-32 (zlib).
//
// XXH3 is not a cryptographic hash: the identity it feeds detects a model that changed,
// not an adversary who crafts a collision (anyone who can rewrite the model files can
// change the results anyway).
import CChecksums
import Foundation

/// A 128-bit digest, written as 32 lowercase hex digits.
struct Digest128: Hashable, Sendable, CustomStringConvertible {
    var low: UInt64
    var high: UInt64

    var description: String { String(format: "%016llx%016llx", high, low) }

    init(low: UInt64, high: UInt64) { (self.low, self.high) = (low, high) }

    /// Parses 32 hex digits; nil for anything else.
    init?(hex: Substring) {
        guard hex.utf8.count == 32, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }),
              let high = UInt64(hex.prefix(16), radix: 16), let low = UInt64(hex.suffix(16), radix: 16) else { return nil }
        (self.low, self.high) = (low, high)
    }

    /// Appends the 16 bytes (low word first, little-endian).
    func append(to bytes: inout [UInt8]) {
        withUnsafeBytes(of: low.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: high.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

enum ContentHash {
    /// Digests are computed per block and combined, so two cores can share a 2.3 GB file;
    /// the block size is part of the definition (changing it changes every digest).
    static let blockSize = 16 << 20

    /// XXH3-128 of each 16 MiB block, then XXH3-128 (seeded with the byte count) of those
    /// block digests in order.
    static func digest(_ bytes: UnsafeRawBufferPointer) -> Digest128 {
        let blocks = max(1, (bytes.count + blockSize - 1) / blockSize)
        var digests = [Digest128](repeating: Digest128(low: 0, high: 0), count: blocks)
        let base = Shared(bytes.baseAddress)
        let count = bytes.count
        digests.withUnsafeMutableBufferPointer { out in
            let slots = Shared(out)
            let workers = min(blocks, ProcessInfo.processInfo.activeProcessorCount)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var b = w
                while b < blocks {
                    let start = b * blockSize, length = min(blockSize, count - start)
                    let h = XXH3_128bits(base.value.map { $0 + start }, length)
                    slots.value[b] = Digest128(low: h.low64, high: h.high64)
                    b += workers
                }
            }
        }
        var joined: [UInt8] = []
        joined.reserveCapacity(16 * blocks)
        for d in digests { d.append(to: &joined) }
        let h = joined.withUnsafeBytes { XXH3_128bits_withSeed($0.baseAddress, $0.count, UInt64(count)) }
        return Digest128(low: h.low64, high: h.high64)
    }

    static func digest(_ bytes: [UInt8]) -> Digest128 {
        bytes.withUnsafeBytes { digest($0) }
    }

    /// XXH3-64 of a buffer (the cache files' checksums).
    static func checksum64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// The CRC-32 zip records for each entry (ISO 3309, as zlib computes it).
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CChecksums.crc32(0, nil, 0)
        var at = 0
        // zlib takes a 32-bit length per call.
        while at < bytes.count {
            let n = min(bytes.count - at, 1 << 30)
            crc = CChecksums.crc32(crc, bytes.baseAddress!.advanced(by: at).assumingMemoryBound(to: UInt8.self), UInt32(n))
            at += n
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}

/// Pointers handed to concurrentPerform, whose closure must be Sendable; each iteration
/// reads the shared input and writes only its own slots.
struct Shared<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
