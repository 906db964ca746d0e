import Foundation
import M3Model

/// Byte layouts of the vectors stored per chunk (all little-endian, see docs/FORMAT.md).
/// Every encoding and decoding of stored vectors goes through here, so the scorer, `check`
/// and exports agree on one layout per storage.
///
/// - dense:   f32: d × float32; f16: d × binary16; int8: scale float32, d × int8.
/// - sparse:  count × (token id int32, weight float32), ids ascending;
/// - ColBERT: f16: rows × d × binary16; int8: rows × scale float32, then rows × d × int8;
///            binary: rows × factor float32, then rows × d/8 sign bytes (bit k%8 of byte
///            k/8 set ⇔ value k ≥ 0); pq<n>: rows × d/n code bytes (centroids in `codebooks`).
package enum VectorCoding {
    // MARK: Dense

    package static func encodeDense(_ v: [Float], storage: DenseStorage = .f32) -> Data {
        switch storage {
        case .f32: return v.withUnsafeBufferPointer { Data(buffer: $0) }
        case .f16: return halves(v)
        case .int8:
            var scale = Data(capacity: 4), codes = Data(capacity: v.count)
            appendInt8(v, scaleTo: &scale, codesTo: &codes)
            return scale + codes
        }
    }

    /// The stored dense vector as float32. With `unit`, an f16 or int8 vector is rescaled to
    /// norm 1 (quantisation moves the norm by ~1e-3 at 1024 dimensions, more at small ones,
    /// and the inner-product graph needs unit vectors); f32 is returned as stored.
    package static func decodeDense(_ raw: UnsafeRawBufferPointer, dimension: Int, storage: DenseStorage = .f32,
                            unit: Bool = false) -> [Float]? {
        guard var v = decodeDenseValues(raw, dimension: dimension, storage: storage) else { return nil }
        if unit && storage != .f32 {
            let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { for i in v.indices { v[i] /= norm } }
        }
        return v
    }

    private static func decodeDenseValues(_ raw: UnsafeRawBufferPointer, dimension: Int, storage: DenseStorage) -> [Float]? {
        guard raw.count == storage.bytes(dimension: dimension) else { return nil }
        switch storage {
        case .f32:
            return [Float](unsafeUninitializedCapacity: dimension) { buf, n in
                // A plain memcpy: `copyBytes(to:)` resolves to Foundation's generic DataProtocol copy here.
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: raw)
                n = dimension
            }
        case .f16: return floats(halvesAt: raw, count: dimension)
        case .int8:
            let scale = float(raw, at: 0)
            return (0..<dimension).map { scale * Float(Int8(bitPattern: raw[4 + $0])) }
        }
    }

    // MARK: Sparse

    package static func encodeSparse(_ s: SparseVector) -> Data {
        var d = Data(capacity: s.count * 8)
        for i in 0..<s.count {
            withUnsafeBytes(of: s.ids[i].littleEndian) { d.append(contentsOf: $0) }
            withUnsafeBytes(of: s.weights[i].bitPattern.littleEndian) { d.append(contentsOf: $0) }
        }
        return d
    }

    package static func decodeSparse(_ raw: UnsafeRawBufferPointer) -> SparseVector? {
        guard raw.count % 8 == 0 else { return nil }
        let n = raw.count / 8
        var ids = [Int32](), weights = [Float]()
        ids.reserveCapacity(n)
        weights.reserveCapacity(n)
        for i in 0..<n {
            let id = Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int32.self))
            let w = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8 + 4, as: UInt32.self)))
            guard w.isFinite, w >= 0, ids.last.map({ $0 < id }) ?? true else { return nil }
            ids.append(id)
            weights.append(w)
        }
        return SparseVector(ids: ids, weights: weights)
    }

    // MARK: ColBERT

    /// How the factor of a binary row is chosen (see BENCHMARKS.md "Storage" for the measurement).
    package enum SignFactor {
        /// ‖x‖₁ / d: the least-squares fit of x by factor · sign(x).
        case meanAbsolute
        /// ‖x‖₂² / ‖x‖₁: makes the estimate exact for the row itself (q = x) and, for unit rows,
        /// is RaBitQ's unbiased estimator ⟨q, s⟩ / ⟨x, s⟩ · ‖x‖² of ⟨q, x⟩.
        case normCorrected
    }

    package static let defaultSignFactor = SignFactor.normCorrected

    package static func encodeColBERT(_ m: MultiVector, storage: ColBERTStorage = .float16, codebook: ProductQuantizer? = nil,
                              signFactor: SignFactor = defaultSignFactor) -> Data {
        let d = m.dimension, n = m.count
        switch storage {
        case .float16:
            return halves(m.values)
        case .int8:
            var scales = Data(capacity: 4 * n), codes = Data(capacity: n * d)
            for r in 0..<n { appendInt8(Array(m.values[r * d ..< (r + 1) * d]), scaleTo: &scales, codesTo: &codes) }
            return scales + codes
        case .binary:
            var factors = Data(capacity: 4 * n), bits = Data(capacity: n * d / 8)
            for r in 0..<n {
                let row = m.values[r * d ..< (r + 1) * d]
                var l1: Float = 0, l2: Float = 0
                for x in row { l1 += abs(x); l2 += x * x }
                let factor: Float
                switch signFactor {
                case .meanAbsolute: factor = l1 / Float(d)
                case .normCorrected: factor = l1 > 0 ? l2 / l1 : 0
                }
                appendFloat(factor, to: &factors)
                for byte in 0..<(d / 8) {
                    var b: UInt8 = 0
                    for bit in 0..<8 where row[row.startIndex + byte * 8 + bit] >= 0 { b |= 1 << bit }
                    bits.append(b)
                }
            }
            return factors + bits
        case .productQuantized:
            guard n > 0 else { return Data() }
            // The index trains its codebook before it encodes the first row.
            guard let codebook else { preconditionFailure("PQ ColBERT storage without a codebook") }
            var codes = [UInt8](repeating: 0, count: n * codebook.subspaces)
            m.values.withUnsafeBufferPointer { v in
                codes.withUnsafeMutableBufferPointer { c in
                    for r in 0..<n { codebook.encode(v.baseAddress! + r * d, into: c.baseAddress! + r * codebook.subspaces) }
                }
            }
            return Data(codes)
        }
    }

    /// Rows in a stored ColBERT blob, or nil when its length is not whole rows.
    package static func colbertRowCount(_ bytes: Int, dimension d: Int, storage: ColBERTStorage) -> Int? {
        let per = storage.bytesPerRow(dimension: d)
        guard d > 0, per > 0, bytes % per == 0 else { return nil }
        return bytes / per
    }

    /// The float32 rows a stored ColBERT blob stands for (each value as the scorer sees it:
    /// scale · byte, factor · ±1, the centroids). Nil when the blob is not whole rows, or for
    /// PQ storage without the index's codebook.
    package static func decodeColBERT(_ raw: UnsafeRawBufferPointer, dimension d: Int, storage: ColBERTStorage = .float16,
                              codebook: ProductQuantizer? = nil) -> MultiVector? {
        guard let n = colbertRowCount(raw.count, dimension: d, storage: storage) else { return nil }
        switch storage {
        case .float16:
            return MultiVector(dimension: d, values: floats(halvesAt: raw, count: n * d))
        case .int8:
            var values = [Float](repeating: 0, count: n * d)
            for r in 0..<n {
                let scale = float(raw, at: 4 * r)
                for k in 0..<d { values[r * d + k] = scale * Float(Int8(bitPattern: raw[4 * n + r * d + k])) }
            }
            return MultiVector(dimension: d, values: values)
        case .binary:
            var values = [Float](repeating: 0, count: n * d)
            for r in 0..<n {
                let factor = float(raw, at: 4 * r)
                for k in 0..<d {
                    let bit = (raw[4 * n + r * d / 8 + k / 8] >> (k % 8)) & 1
                    values[r * d + k] = bit == 1 ? factor : -factor
                }
            }
            return MultiVector(dimension: d, values: values)
        case .productQuantized:
            // The codebook must cut a row into as many codes as the storage stores.
            guard let codebook, codebook.dimension == d, codebook.subspaces == storage.bytesPerRow(dimension: d) else { return nil }
            let m = codebook.subspaces
            var values: [Float] = []
            values.reserveCapacity(n * d)
            for r in 0..<n { values += codebook.decode(UnsafeRawBufferPointer(rebasing: raw[r * m ..< (r + 1) * m])) }
            return MultiVector(dimension: d, values: values)
        }
    }

    /// A stored ColBERT blob as float32 rows, whatever the storage (for exports and checks).
    package static func decodeColbert(_ raw: Data, dimension: Int, storage: ColBERTStorage,
                              codebook: ProductQuantizer?) -> [[Float]]? {
        guard let m = raw.withUnsafeBytes({ decodeColBERT($0, dimension: dimension, storage: storage, codebook: codebook) })
        else { return nil }
        return (0..<m.count).map { Array(m.values[$0 * dimension ..< ($0 + 1) * dimension]) }
    }

    // MARK: Helpers

    private static func halves(_ v: [Float]) -> Data {
        var h = [UInt16](repeating: 0, count: v.count)
        for i in 0..<v.count { h[i] = Float16(v[i]).bitPattern.littleEndian }
        return h.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    private static func floats(halvesAt raw: UnsafeRawBufferPointer, count n: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n {
                buf[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
            }
            count = n
        }
    }

    private static func float(_ raw: UnsafeRawBufferPointer, at offset: Int) -> Float {
        Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    private static func appendFloat(_ v: Float, to d: inout Data) {
        withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) }
    }

    /// Symmetric int8: scale = max|x| / 127, byte = round(x / scale).
    private static func appendInt8(_ v: [Float], scaleTo scales: inout Data, codesTo codes: inout Data) {
        let peak = v.reduce(Float(0)) { max($0, abs($1)) }
        let scale = peak > 0 ? peak / 127 : 0
        appendFloat(scale, to: &scales)
        for x in v {
            let q = scale > 0 ? (x / scale).rounded() : 0
            codes.append(UInt8(bitPattern: Int8(max(-127, min(127, q)))))
        }
    }
}

