import Foundation
import M3Model

/// Byte layouts of the vectors stored per chunk (all little-endian, see Indexes/FORMAT.md):
/// - dense:   dimension × float32;
/// - sparse:  count × (token id int32, weight float32), ids ascending;
/// - ColBERT: rows × dimension × float16.
enum VectorCoding {
    static func encodeDense(_ v: [Float]) -> Data {
        v.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    static func decodeDense(_ raw: UnsafeRawBufferPointer, dimension: Int) -> [Float]? {
        guard raw.count == dimension * 4 else { return nil }
        return [Float](unsafeUninitializedCapacity: dimension) { buf, n in
            _ = raw.copyBytes(to: UnsafeMutableRawBufferPointer(buf))
            n = dimension
        }
    }

    static func encodeSparse(_ s: SparseVector) -> Data {
        var d = Data(capacity: s.count * 8)
        for i in 0..<s.count {
            withUnsafeBytes(of: s.ids[i].littleEndian) { d.append(contentsOf: $0) }
            withUnsafeBytes(of: s.weights[i].bitPattern.littleEndian) { d.append(contentsOf: $0) }
        }
        return d
    }

    static func decodeSparse(_ raw: UnsafeRawBufferPointer) -> SparseVector? {
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

    static func encodeColBERT(_ m: MultiVector) -> Data {
        var halves = [UInt16](repeating: 0, count: m.values.count)
        for i in 0..<m.values.count { halves[i] = Float16(m.values[i]).bitPattern }
        return halves.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    /// float16 rows → float32 MultiVector.
    static func decodeColBERT(_ raw: UnsafeRawBufferPointer, dimension: Int) -> MultiVector? {
        guard dimension > 0, raw.count % (2 * dimension) == 0 else { return nil }
        let n = raw.count / 2
        let values = [Float](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n {
                buf[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
            }
            count = n
        }
        return MultiVector(dimension: dimension, values: values)
    }
}
