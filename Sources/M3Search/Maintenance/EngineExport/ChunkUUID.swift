/// Stable point ids for engines that want integers or UUIDs (Qdrant; Vespa when a chunk id
/// holds characters a Vespa document id cannot): the RFC 4122 version-5 UUID of the chunk id
/// `"<doc_id>#<chunk>"`. The same chunk gets the same id in every export, so feeding an
/// export again overwrites instead of duplicating.
enum ChunkUUID {
    /// The namespace of every m3search chunk UUID; the earlier Python converter used the
    /// same, so ids loaded through it stay valid.
    static let namespace: [UInt8] = [0x6d, 0x3f, 0x1c, 0x1e, 0x8b, 0x0a, 0x5c, 0x59,
                                     0x9f, 0x57, 0x3e, 0x2b, 0x8a, 0x0c, 0x5d, 0x11]

    /// `uuid5(namespace, name)` in the canonical lower-case 8-4-4-4-12 form.
    static func make(_ name: String, namespace: [UInt8] = namespace) -> String {
        var digest = SHA1.hash(namespace + Array(name.utf8))
        digest[6] = (digest[6] & 0x0f) | 0x50   // version 5
        digest[8] = (digest[8] & 0x3f) | 0x80   // RFC 4122 variant
        var text = ""
        for (i, byte) in digest.prefix(16).enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { text += "-" }
            text += hexDigits[Int(byte >> 4)] + hexDigits[Int(byte & 0x0f)]
        }
        return text
    }

    private static let hexDigits = (0 ..< 16).map { String($0, radix: 16) }
}

/// SHA-1 (FIPS 180-4), only as UUID version 5 defines it; not for security.
enum SHA1 {
    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
        // Padding: 0x80, zeros to 56 mod 64, then the length in bits, big-endian.
        var data = message
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }

        var w = [UInt32](repeating: 0, count: 80)
        for block in stride(from: 0, to: data.count, by: 64) {
            for t in 0 ..< 16 {
                let i = block + 4 * t
                w[t] = UInt32(data[i]) << 24 | UInt32(data[i + 1]) << 16 | UInt32(data[i + 2]) << 8 | UInt32(data[i + 3])
            }
            for t in 16 ..< 80 { w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1) }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4]
            for t in 0 ..< 80 {
                let f: UInt32, k: UInt32
                switch t {
                case 0 ..< 20: f = (b & c) | (~b & d); k = 0x5A82_7999
                case 20 ..< 40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                case 40 ..< 60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                default: f = b ^ c ^ d; k = 0xCA62_C1D6
                }
                let temp = rotl(a, 5) &+ f &+ e &+ k &+ w[t]
                e = d; d = c; c = rotl(b, 30); b = a; a = temp
            }
            h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d; h[4] = h[4] &+ e
        }
        return h.flatMap { word in [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: word >> UInt32($0)) } }
    }

    private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { x << n | x >> (32 - n) }
}
