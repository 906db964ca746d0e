// How the graph holds its vectors: one fixed-size row per slot, in float32 or as int8 codes,
// and the score functions over them. The graph code only sees rows, an encoded query and
// two function pointers, so it never knows which encoding it ranks with (hnswlib's
// SpaceInterface, without the virtual call).
import CM3Kernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension HNSWIndex {
    /// How the graph keeps the vectors it traverses with.
    ///
    /// `.int8` keeps d signed bytes plus 12 bytes per vector (1,088 bytes at 1024-d, a
    /// quarter of float32) and scores with integer dot products (AVX-512 VNNI where the CPU
    /// has it). Its scores approximate the cosine (|error| ≈ 1e-3 at 1024-d), so the
    /// candidates it returns should be rescored exactly: pass `exactScore` to `search`, or
    /// rescore them yourself from the vectors you store.
    public enum VectorEncoding: Sendable, Equatable, CustomStringConvertible {
        /// float32 rows: scores are exact inner products.
        case float32
        /// int8 codes with scale max|v|/127 (the store's int8 dense layout): approximate scores.
        case int8

        public var description: String { self == .float32 ? "float32" : "int8" }
    }
}

/// The row layout and score functions of one encoding, resolved once per index.
struct VectorRows {
    let encoding: HNSWIndex.VectorEncoding
    let dim: Int
    /// Bytes per row (and per encoded query); rows are 64-byte aligned for int8.
    let rowBytes: Int
    /// Bytes that identify a vector (codes only: an int8 row's residual may differ for equal codes).
    let identityBytes: Int
    /// Encoded query × row.
    let scoreQuery: m3ix_score_fn
    /// Row × row; equals `scoreQuery` of the query made from the first row, bit for bit.
    let scoreRows: m3ix_score_fn

    init(encoding: HNSWIndex.VectorEncoding, dimension d: Int) {
        self.encoding = encoding
        dim = d
        switch encoding {
        case .float32:
            rowBytes = d * MemoryLayout<Float>.stride
            identityBytes = rowBytes
            scoreQuery = m3ix_score_f32_best()!
            scoreRows = scoreQuery
        case .int8:
            rowBytes = m3ix_q8_row_bytes(d)
            identityBytes = d
            scoreQuery = m3ix_score_q8_best()!
            scoreRows = m3ix_score_q8_rows_best()!
        }
    }

    /// Writes unit vector `v` as a row. False if it has no direction (all zeros after quantisation).
    func encodeRow(_ v: UnsafePointer<Float>, into row: UnsafeMutableRawPointer) -> Bool {
        switch encoding {
        case .float32:
            row.copyMemory(from: v, byteCount: rowBytes)
            return true
        case .int8:
            return m3ix_q8_encode_row(v, dim, row) == 0
        }
    }

    /// Writes int8 codes (d signed bytes, any scale) as a row: for int8 the codes themselves
    /// (taken as exact: residual 0); for float32 the unit vector in their direction.
    /// False if the codes are all zero.
    func encodeRow(codes: UnsafeRawPointer, into row: UnsafeMutableRawPointer) -> Bool {
        switch encoding {
        case .int8:
            row.initializeMemory(as: UInt8.self, repeating: 0, count: rowBytes)
            row.copyMemory(from: codes, byteCount: dim)
            return m3ix_q8_finish_row(row, dim) == 0
        case .float32:
            let c = codes.assumingMemoryBound(to: Int8.self)
            var norm2 = 0.0
            for i in 0..<dim { norm2 += Double(c[i]) * Double(c[i]) }
            guard norm2 > 0 else { return false }
            let inv = 1 / norm2.squareRoot()
            let out = row.assumingMemoryBound(to: Float.self)
            for i in 0..<dim { out[i] = Float(Double(c[i]) * inv) }
            return true
        }
    }

    /// Encodes a float query into `out` (rowBytes). Returns ‖q − q̂‖ (0 for float32).
    func encodeQuery(_ q: UnsafePointer<Float>, into out: UnsafeMutableRawPointer) -> Float {
        switch encoding {
        case .float32:
            out.copyMemory(from: q, byteCount: rowBytes)
            return 0
        case .int8:
            return m3ix_q8_encode_query(q, dim, out)
        }
    }

    /// The query that searches for `row` (the row itself for float32).
    func query(fromRow row: UnsafeRawPointer, buffer: UnsafeMutableRawPointer) -> UnsafeRawPointer {
        switch encoding {
        case .float32: return row
        case .int8:
            m3ix_q8_query_from_row(row, dim, buffer)
            return UnsafeRawPointer(buffer)
        }
    }

    /// The vector a row stands for, as floats (x̂ = factor · codes for int8).
    func decode(_ row: UnsafeRawPointer) -> [Float] {
        switch encoding {
        case .float32:
            return Array(UnsafeBufferPointer(start: row.assumingMemoryBound(to: Float.self), count: dim))
        case .int8:
            let c = row.assumingMemoryBound(to: Int8.self)
            let factor = row.loadUnaligned(fromByteOffset: m3ix_q8_meta_offset(dim), as: Float.self)
            return (0..<dim).map { Float(c[$0]) * factor }
        }
    }

    /// Float query · the vector a row stands for, without decoding it: the exact inner
    /// product with `decode(row)` (up to float rounding), for rescoring candidates.
    func exactScore(_ q: UnsafePointer<Float>, _ row: UnsafeRawPointer) -> Float {
        switch encoding {
        case .float32:
            return m3ix_dot_f32(q, row.assumingMemoryBound(to: Float.self), dim)
        case .int8:
            let factor = row.loadUnaligned(fromByteOffset: m3ix_q8_meta_offset(dim), as: Float.self)
            return m3ix_dot_f32_s8(q, row.assumingMemoryBound(to: Int8.self), dim) * factor
        }
    }

    /// An encoded int8 query as floats (q̂ = scale · codes).
    func decodeQuery(_ q: UnsafeRawPointer) -> [Float] {
        let c = q.assumingMemoryBound(to: UInt8.self)
        let scale = q.loadUnaligned(fromByteOffset: m3ix_q8_meta_offset(dim), as: Float.self)
        return (0..<dim).map { Float(Int(c[$0]) - 128) * scale }
    }

    /// ‖x − x̂‖ recorded for an int8 row (0 for float32 and for rows loaded from codes).
    func residual(_ row: UnsafeRawPointer) -> Float {
        encoding == .int8 ? row.loadUnaligned(fromByteOffset: m3ix_q8_meta_offset(dim) + 8, as: Float.self) : 0
    }

    /// Whether two rows hold the same vector.
    func identical(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> Bool {
        memcmp(a, b, identityBytes) == 0
    }
}
