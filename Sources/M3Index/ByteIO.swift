// Little-endian byte encoding for the persisted index records. The reader checks every
// length before it reads, so truncated or padded input becomes `IndexError.corrupt`
// naming the record, never an out-of-bounds trap.

struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func raw(_ s: [UInt8]) { bytes.append(contentsOf: s) }

    /// LEB128 unsigned varint (7 bits per byte, high bit = more).
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
}

/// Reads a record's fields in order, with errors naming the record and the field.
///
/// Names are autoclosures, formatted only when an error needs them: decoders name each
/// element ("doc id 7"), and formatting those strings for every element was most of the
/// time spent decoding posting lists when an index opened.
struct ByteReader {
    let bytes: [UInt8]
    /// Names the record in error messages ("HNSW meta", "posting list for token 7").
    let what: () -> String
    private(set) var offset = 0

    init(_ bytes: [UInt8], what: @autoclosure @escaping () -> String) {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }

    func fail(_ detail: String) -> IndexError { .corrupt(what: what(), detail: detail) }

    private mutating func take(_ n: Int, _ field: @autoclosure () -> String) throws(IndexError) -> Int {
        guard n <= remaining else {
            throw fail("ends inside \(field()) at byte \(offset) (needs \(n), has \(remaining))")
        }
        defer { offset += n }
        return offset
    }

    mutating func u8(_ field: @autoclosure () -> String) throws(IndexError) -> UInt8 {
        bytes[try take(1, field())]
    }

    mutating func bytes(_ n: Int, _ field: @autoclosure () -> String) throws(IndexError) -> [UInt8] {
        let start = try take(n, field())
        return Array(bytes[start ..< start + n])
    }

    mutating func u16(_ field: @autoclosure () -> String) throws(IndexError) -> UInt16 {
        let o = try take(2, field())
        return UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8
    }

    mutating func u32(_ field: @autoclosure () -> String) throws(IndexError) -> UInt32 {
        let o = try take(4, field())
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[o + i]) << (8 * UInt32(i)) }
        return v
    }

    mutating func u64(_ field: @autoclosure () -> String) throws(IndexError) -> UInt64 {
        let o = try take(8, field())
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[o + i]) << (8 * UInt64(i)) }
        return v
    }

    mutating func i32(_ field: @autoclosure () -> String) throws(IndexError) -> Int32 { Int32(bitPattern: try u32(field())) }
    mutating func i64(_ field: @autoclosure () -> String) throws(IndexError) -> Int64 { Int64(bitPattern: try u64(field())) }
    mutating func f32(_ field: @autoclosure () -> String) throws(IndexError) -> Float { Float(bitPattern: try u32(field())) }

    mutating func magic(_ expected: [UInt8], _ field: @autoclosure () -> String) throws(IndexError) {
        let o = try take(expected.count, field())
        guard Array(bytes[o..<o + expected.count]) == expected else {
            throw fail("bad \(field()) \(bytes[o..<o + expected.count].map { $0 }) (expected \(expected)); not an m3search index record")
        }
    }

    mutating func varint(_ field: @autoclosure () -> String) throws(IndexError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8(field())
            // The 10th byte may carry only the top bit of a 64-bit value.
            guard shift < 63 || (shift == 63 && b <= 1) else { throw fail("\(field()) varint overflows 64 bits") }
            v |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    func expectEnd() throws(IndexError) {
        guard remaining == 0 else { throw fail("\(remaining) unexpected trailing bytes at \(offset)") }
    }
}
