import Foundation
import M3Index
import M3Model
import XCTest
import M3TestSupport

/// The byte forms of stored vectors: codec error bounds, and scoring on the compressed form
/// against scoring decoded rows with the model's own scorer.
final class VectorCodingTests: XCTestCase {
    /// Seeded unit rows for codec tests.
    struct RNG {
        var base: TestRNG
        init(state: UInt64) { base = TestRNG(seed: state) }
        mutating func unitRows(_ n: Int, _ d: Int) -> [Float] {
            (0..<n).flatMap { _ in normalized((0..<d).map { _ in base.gaussian() }) }
        }
    }

    func testCodecsRoundTripWithinTheirErrorBounds() throws {
        var rng = RNG(state: 1)
        let d = 64, n = 40
        let m = MultiVector(dimension: d, values: rng.unitRows(n, d))
        // float16: relative rounding 2⁻¹¹.
        let f16 = VectorCoding.encodeColBERT(m, storage: .float16)
        XCTAssertEqual(f16.count, n * d * 2)
        let back16 = f16.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: .float16) }!
        for (a, b) in zip(m.values, back16.values) { XCTAssertLessThanOrEqual(abs(a - b), abs(a) * 0x1p-11 + 1e-7) }
        // int8: per-row scale max|x| / 127, error ≤ half a step.
        let i8 = VectorCoding.encodeColBERT(m, storage: .int8)
        XCTAssertEqual(i8.count, n * (d + 4))
        let back8 = i8.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: .int8) }!
        for r in 0..<n {
            let step: Float = m[r].map { abs($0) }.max()! / 127
            for k in 0..<d { XCTAssertLessThanOrEqual(abs(m.values[r * d + k] - back8.values[r * d + k]), step / 2 * 1.0001) }
        }
        // Sign bits: factor ‖x‖² / ‖x‖₁ times the sign of each value.
        let bits = VectorCoding.encodeColBERT(m, storage: .binary)
        XCTAssertEqual(bits.count, n * (d / 8 + 4))
        let backBits = bits.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: .binary) }!
        for r in 0..<n {
            let row: [Float] = Array(m[r])
            let l2: Float = row.reduce(0) { $0 + $1 * $1 }, l1: Float = row.reduce(0) { $0 + abs($1) }
            let factor = l2 / l1
            for k in 0..<d {
                let expected: Float = row[k] >= 0 ? factor : -factor
                XCTAssertEqual(backBits.values[r * d + k], expected, accuracy: 1e-6)
            }
        }
        // Dense: f16 and int8 within their steps; decoding with `unit` gives norm 1.
        let v = rng.unitRows(1, 1024)
        for storage in DenseStorage.allCases {
            let blob = VectorCoding.encodeDense(v, storage: storage)
            XCTAssertEqual(blob.count, storage.bytes(dimension: 1024))
            let raw = blob.withUnsafeBytes { VectorCoding.decodeDense($0, dimension: 1024, storage: storage) }!
            let bound: Float = storage == .f32 ? 0 : storage == .f16 ? 0x1p-11 * 0.2 : v.map(abs).max()! / 254 * 1.0001
            for (a, b) in zip(v, raw) { XCTAssertLessThanOrEqual(abs(a - b), bound + 1e-8, "\(storage)") }
            let unit = blob.withUnsafeBytes { VectorCoding.decodeDense($0, dimension: 1024, storage: storage, unit: true) }!
            XCTAssertEqual(unit.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
        }
        // Wrong lengths are refused, not misread.
        XCTAssertNil(Data(count: 7).withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: .int8) })
        XCTAssertNil(Data(count: 130).withUnsafeBytes { VectorCoding.decodeDense($0, dimension: d, storage: .f16) })
    }

    /// The scorer reads compressed rows directly; decoding them and scoring with the model's
    /// sgemm-based `Scores.colbert` (a separate path) gives the same MaxSim. PQ rows of 2 or 4
    /// values per code are scored in bfloat16 (query and centroids rounded to the nearer
    /// bfloat16 neighbour, products exact), so there the reference rounds both first.
    func testScoringCompressedRowsEqualsScoringDecodedRows() throws {
        var rng = RNG(state: 2)
        let d = 64
        let corpus = rng.unitRows(600, d)
        let pq8 = try ProductQuantizer.train(rows: corpus, dimension: d, subspaces: 8)
        let pq4 = try ProductQuantizer.train(rows: corpus, dimension: d, subspaces: 16)
        let pq2 = try ProductQuantizer.train(rows: corpus, dimension: d, subspaces: 32)
        let toBFloat16 = { (x: Float) -> Float in
            let low = Float(bitPattern: x.bitPattern & 0xFFFF_0000), high = Float(bitPattern: (x.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
            let dl = abs(Double(x) - Double(low)), dh = abs(Double(high) - Double(x))
            return dl < dh || (dl == dh && (low.bitPattern >> 16) & 1 == 0) ? low : high
        }
        for (storage, pq): (ColBERTStorage, ProductQuantizer) in [(.float16, pq8), (.int8, pq8), (.binary, pq8),
                                                                  (.productQuantized(dimensionsPerCode: 8), pq8),
                                                                  (.productQuantized(dimensionsPerCode: 4), pq4),
                                                                  (.productQuantized(dimensionsPerCode: 2), pq2)] {
            let inBFloat16 = storage.needsCodebook && !pq.scoresThroughTable
            let rounded = inBFloat16 ? try ProductQuantizer(dimension: d, subspaces: pq.subspaces, centroids: pq.centroids.map(toBFloat16)) : pq
            for (nq, np) in [(1, 1), (5, 17), (20, 70)] {
                let q = MultiVector(dimension: d, values: rng.unitRows(nq, d))
                let p = MultiVector(dimension: d, values: rng.unitRows(np, d))
                let blob = VectorCoding.encodeColBERT(p, storage: storage, codebook: pq)
                let scorer = ColBERTScorer(query: q, storage: storage, codebook: pq)
                let fast = blob.withUnsafeBytes { scorer.score($0) }!
                let decoded = blob.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: storage, codebook: pq) }!
                XCTAssertEqual(decoded.count, np)
                let reference = inBFloat16
                    ? Scores.colbert(MultiVector(dimension: d, values: q.values.map(toBFloat16)),
                                     blob.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: d, storage: storage, codebook: rounded) }!)
                    : Scores.colbert(q, decoded)
                XCTAssertEqual(fast, reference, accuracy: 1e-5, "\(storage) \(nq)×\(np)")
                // bfloat16 moves a score by far less than the quantisation does.
                XCTAssertEqual(fast, Scores.colbert(q, decoded), accuracy: inBFloat16 ? 5e-3 : 1e-5, "\(storage) \(nq)×\(np)")
                let rows = VectorCoding.decodeColbert(blob, dimension: d, storage: storage, codebook: pq)!
                XCTAssertEqual(rows.flatMap { $0 }, decoded.values)
            }
        }
    }

    /// The chunk codec stores what the graph holds: the dense vector as read back, and
    /// ColBERT rows pruned then encoded in the storage in effect (float16 while PQ waits).
    func testChunkCodecEncodesWhatItDecodes() throws {
        var rng = RNG(state: 3)
        let d = 32
        let dense = rng.unitRows(1, d)
        let rows = MultiVector(dimension: d, values: rng.unitRows(9, d))
        let sparse = SparseVector(ids: [3, 17, 400], weights: [0.5, 0.25, 0.125])
        for storage in DenseStorage.allCases {
            let codec = ChunkCodec(dimension: d, dense: storage, colbert: .productQuantized(dimensionsPerCode: 8),
                                   pruning: .none, unitDense: true)
            XCTAssertEqual(codec.colbertRows, .float16, "PQ without a codebook stores float16 rows")
            let blobs = codec.encode(dense: dense, sparse: sparse, colbert: rows)
            XCTAssertEqual(blobs.dense.count, storage.bytes(dimension: d))
            XCTAssertEqual(blobs.graphVector, blobs.dense.withUnsafeBytes { codec.decodeDense($0) })
            XCTAssertEqual(blobs.sparse.withUnsafeBytes { VectorCoding.decodeSparse($0) }, sparse)
            XCTAssertEqual(blobs.colbert.withUnsafeBytes { codec.colbertRowCount($0) }, 9)
            let back = try XCTUnwrap(blobs.colbert.withUnsafeBytes { codec.decodeColBERT($0) })
            for (a, b) in zip(rows.values, back.values) { XCTAssertLessThanOrEqual(abs(a - b), abs(a) * 0x1p-11 + 1e-7) }
        }
        let pq = try ProductQuantizer.train(rows: rng.unitRows(600, d), dimension: d, subspaces: 4)
        let codec = ChunkCodec(dimension: d, dense: .f32, colbert: .productQuantized(dimensionsPerCode: 8), pruning: .none,
                               unitDense: true, codebook: pq)
        XCTAssertEqual(codec.colbertRows, .productQuantized(dimensionsPerCode: 8))
        let blobs = codec.encode(dense: dense, sparse: sparse, colbert: rows)
        XCTAssertEqual(blobs.graphVector, dense, "float32 dense is stored as given")
        XCTAssertEqual(blobs.colbert.count, 9 * 4)
    }
}
