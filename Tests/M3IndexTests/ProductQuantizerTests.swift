import CM3Kernels
import M3Index
import XCTest
import M3TestSupport

/// The product quantiser and its table-driven MaxSim (every level this CPU has), against
/// plain Swift loops in double precision over the values the codes stand for. (The int8 and
/// sign-bit MaxSim kernels are tested in CM3KernelsTests.)
final class ProductQuantizerTests: XCTestCase {
    var levels: [Int32] { Array(Set([Int32(M3IX_ISA_PORTABLE), m3ix_isa_level()])).sorted() }

    /// (1/nq) Σ_i max_j q_i · p_j in double precision.
    func referenceMaxSim(_ q: [Float], _ p: [Double], nq: Int, np: Int, d: Int) -> Double {
        var total = 0.0
        for i in 0..<nq {
            var best = -Double.infinity
            for j in 0..<np {
                var s = 0.0
                for k in 0..<d { s += Double(q[i * d + k]) * p[j * d + k] }
                best = max(best, s)
            }
            total += best
        }
        return total / Double(nq)
    }

    /// The table-driven PQ MaxSim equals MaxSim over the decoded rows (centroids laid end to
    /// end), for query-row counts around the 16-lane and 64-row blocks, and subspaces of 8, 4
    /// and 2 values (pq8 … pq2; pq2 is the default at 384-d, pq4 at 1024-d).
    func testPQMaxSimMatchesDecodedRows() throws {
        var rng = TestRNG(seed: 23)
        for (nq, np, d, m) in [(1, 1, 16, 2), (5, 9, 32, 4), (16, 3, 64, 8), (17, 20, 64, 16), (70, 11, 48, 6),
                               (9, 7, 16, 8), (20, 13, 384, 192), (33, 4, 1024, 256), (21, 40, 1024, 512),
                               (2, 3, 8200, 4100)] {
            let centroids = (0..<(d * 256)).map { _ in rng.gaussian() }
            let pq = try ProductQuantizer(dimension: d, subspaces: m, centroids: centroids)
            let q = (0..<(nq * d)).map { _ in rng.gaussian() }
            let codes = (0..<(np * m)).map { _ in UInt8(rng.int(0..<256)) }
            var values: [Double] = []
            for j in 0..<np { values += codes[j * m ..< (j + 1) * m].withUnsafeBytes { pq.decode($0) }.map(Double.init) }
            let ref = referenceMaxSim(q, values, nq: nq, np: np, d: d)
            let table = q.withUnsafeBufferPointer { pq.lookupTable(query: $0) }
            for level in levels {
                let got = table.withUnsafeBufferPointer { t in codes.withUnsafeBufferPointer { c in
                    m3cx_maxsim_pq_isa(level, t.baseAddress, nq, m, c.baseAddress, np)
                } }
                XCTAssertEqual(Double(got), ref, accuracy: 1e-4 * max(1, abs(ref)), "level \(level) nq \(nq) np \(np) d \(d) m \(m)")
                // Decoded a block at a time instead of through the table (rows above 8,192
                // values: one at a time on the heap).
                let decoded = q.withUnsafeBufferPointer { qp in pq.centroids.withUnsafeBufferPointer { c in
                    codes.withUnsafeBufferPointer { cp in
                        m3cx_maxsim_pq_rows_isa(level, qp.baseAddress, nq, d, c.baseAddress, m, cp.baseAddress, np)
                    }
                } }
                XCTAssertEqual(Double(decoded), ref, accuracy: 1e-4 * max(1, abs(ref)), "rows: level \(level) nq \(nq) np \(np) d \(d) m \(m)")
            }
            let direct = q.withUnsafeBufferPointer { qp in codes.withUnsafeBytes { Similarity.maxSim(query: qp, codebook: pq, codes: $0) } }
            XCTAssertEqual(Double(direct), ref, accuracy: 1e-4 * max(1, abs(ref)))
            let wrapped = table.withUnsafeBufferPointer { t in codes.withUnsafeBytes { c in
                Similarity.maxSim(table: t, queryRows: nq, subspaces: m, codes: c)
            } }
            XCTAssertEqual(Double(wrapped), ref, accuracy: 1e-4 * max(1, abs(ref)))
        }
    }

    /// bfloat16 nearest to `x` by distance (ties to the even pattern), found by comparing the
    /// two bracketing patterns in double: independent of the kernel's bit trick.
    func referenceBFloat16(_ x: Float) -> UInt16 {
        let low = x.bitPattern & 0xFFFF_0000
        let candidates = [low, low &+ 0x1_0000].filter { Float(bitPattern: $0).isFinite }
        guard candidates.count == 2 else { return UInt16(low >> 16) }  // at the top of the range: no rounding up
        let d0 = abs(Double(Float(bitPattern: candidates[0])) - Double(x))
        let d1 = abs(Double(Float(bitPattern: candidates[1])) - Double(x))
        if d0 != d1 { return UInt16((d0 < d1 ? candidates[0] : candidates[1]) >> 16) }
        return UInt16((candidates[0] >> 16) & 1 == 0 ? candidates[0] >> 16 : candidates[1] >> 16)
    }

    func testBFloat16RoundingMatchesReference() {
        var rng = TestRNG(seed: 31)
        var values = (0..<20_000).map { _ in rng.gaussian() * Float(pow(2.0, Double(rng.int(-20..<20)))) }
        // Ties (exactly half-way, odd and even), zeros, the largest finite floats.
        values += [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), 0, -0, .greatestFiniteMagnitude,
                   -.greatestFiniteMagnitude, Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x0000_8001)]
        let got = Similarity.bfloat16(values)
        for (i, x) in values.enumerated() {
            let want = referenceBFloat16(x)
            if got[i] != want { XCTFail("bfloat16(\(x)) = \(String(got[i], radix: 16)), want \(String(want, radix: 16))"); return }
        }
        // Beyond bfloat16's largest finite value: its largest, never infinity.
        XCTAssertEqual(Similarity.bfloat16([.greatestFiniteMagnitude, -.greatestFiniteMagnitude]), [0x7F7F, 0xFF7F])
    }

    /// The bfloat16 PQ MaxSim (AVX512-BF16 where present, float32 on the widened values at
    /// every level) equals MaxSim in double over the bfloat16-rounded query and centroids, for
    /// 2 and 4 values per code (the gathers), other widths, tails of subspaces (m not a
    /// multiple of 8 or 16) and of dimensions (d not a multiple of 32).
    func testBFloat16PQMaxSimMatchesRoundedReference() throws {
        var rng = TestRNG(seed: 29)
        let fast = m3cx_bf16_is_fast() != 0
        for (nq, np, d, m) in [(1, 1, 16, 4), (5, 9, 40, 10), (16, 3, 64, 16), (17, 20, 64, 32), (9, 13, 384, 192),
                               (33, 14, 1024, 256), (3, 11, 1024, 128), (4, 5, 200, 50), (6, 7, 100, 25), (2, 3, 8200, 4100)] {
            let centroids = (0..<(d * 256)).map { _ in rng.gaussian() * 0.05 }
            let pq = try ProductQuantizer(dimension: d, subspaces: m, centroids: centroids)
            let q = (0..<(nq * d)).map { _ in rng.gaussian() * 0.05 }
            let codes = (0..<(np * m)).map { _ in UInt8(rng.int(0..<256)) }
            let qh = q.map(referenceBFloat16), ch = centroids.map(referenceBFloat16)
            let widen = { (h: UInt16) in Float(bitPattern: UInt32(h) << 16) }
            let ds = d / m
            var rows: [Double] = []
            for j in 0..<np {
                for s in 0..<m { for t in 0..<ds { rows.append(Double(widen(ch[(s * 256 + Int(codes[j * m + s])) * ds + t]))) } }
            }
            let ref = referenceMaxSim(qh.map(widen), rows, nq: nq, np: np, d: d)
            let tolerance = 1e-4 * max(1e-2, abs(ref))
            for level in levels + [Int32(M3IX_ISA_AVX2)] where level <= m3ix_isa_level() {
                let got = qh.withUnsafeBufferPointer { qp in pq.centroidsBF16.withUnsafeBufferPointer { c in
                    codes.withUnsafeBufferPointer { cp in
                        m3cx_maxsim_pq_rows_bf16_isa(level, qp.baseAddress, nq, d, c.baseAddress, m, cp.baseAddress, np)
                    }
                } }
                XCTAssertEqual(Double(got), ref, accuracy: tolerance, "level \(level) (bf16 hardware: \(fast)) nq \(nq) np \(np) d \(d) m \(m)")
            }
            let viaAPI = qh.withUnsafeBufferPointer { qp in codes.withUnsafeBytes { Similarity.maxSim(queryBF16: qp, codebook: pq, codes: $0) } }
            XCTAssertEqual(Double(viaAPI), ref, accuracy: tolerance)
            // And within bfloat16's rounding of the float32 MaxSim over the same codes.
            let exact = q.withUnsafeBufferPointer { qp in codes.withUnsafeBytes { Similarity.maxSim(query: qp, codebook: pq, codes: $0) } }
            XCTAssertEqual(Double(viaAPI), Double(exact), accuracy: 2e-2 * max(1e-2, abs(Double(exact))) + 1e-4)
        }
    }

    /// `m3cx_nearest_centroid` at every level against a Swift argmin of the same sums
    /// (‖c‖² then each −2·x·c term added in order, in Float) and, where the nearest is clear,
    /// of the brute-force squared distance in double; duplicated centroids give the first.
    func testNearestCentroidEveryLevelMatchesReferenceArgmin() {
        var rng = TestRNG(seed: 25)
        for (ds, k) in [(4, 256), (2, 256), (8, 256), (1, 256), (4, 100), (16, 256)] {
            for trial in 0..<40 {
                var centroids = (0..<(k * ds)).map { _ in rng.gaussian() }   // row-major, k × ds
                var x = (0..<ds).map { _ in rng.gaussian() }
                if trial % 4 == 1 {
                    // A tie: a later centroid repeats an earlier one, and x is that centroid.
                    let a = rng.int(0..<k), b = rng.int(0..<k)
                    for t in 0..<ds { centroids[max(a, b) * ds + t] = centroids[min(a, b) * ds + t] }
                    x = Array(centroids[min(a, b) * ds ..< (min(a, b) + 1) * ds])
                }
                var transposed = [Float](repeating: 0, count: k * ds)
                for c in 0..<k { for t in 0..<ds { transposed[t * k + c] = centroids[c * ds + t] } }
                let norms = (0..<k).map { c in (0..<ds).reduce(Float(0)) { $0 + centroids[c * ds + $1] * centroids[c * ds + $1] } }
                var dist = norms
                for t in 0..<ds { let w = -2 * x[t]; for c in 0..<k { dist[c] += w * transposed[t * k + c] } }
                var expected = 0
                for c in 1..<k where dist[c] < dist[expected] { expected = c }
                let exact = (0..<k).map { c in (0..<ds).reduce(0.0) { acc, t in
                    let e = Double(x[t]) - Double(centroids[c * ds + t])
                    return acc + e * e
                } }
                let order = exact.indices.sorted { exact[$0] < exact[$1] }
                if exact[order[1]] - exact[order[0]] > 1e-3 { XCTAssertEqual(expected, order[0]) }
                for level in levels {
                    let got = x.withUnsafeBufferPointer { xp in transposed.withUnsafeBufferPointer { tp in norms.withUnsafeBufferPointer { np in
                        m3cx_nearest_centroid_isa(level, xp.baseAddress, ds, tp.baseAddress, np.baseAddress, k)
                    } } }
                    XCTAssertEqual(Int(got), expected, "level \(level) ds \(ds) k \(k) trial \(trial)")
                }
            }
        }
    }

    /// Encoding picks, per subspace, the centroid nearest by brute-force squared distance
    /// (subspaces of 8, 4 and 2 values).
    func testPQEncodingPicksNearestCentroid() throws {
        var rng = TestRNG(seed: 24)
        for (d, m) in [(32, 4), (32, 8), (32, 16)] {
            let ds = d / m
            let pq = try ProductQuantizer(dimension: d, subspaces: m, centroids: (0..<(d * 256)).map { _ in rng.gaussian() })
            for _ in 0..<50 {
                let x = (0..<d).map { _ in rng.gaussian() }
                var codes = [UInt8](repeating: 0, count: m)
                x.withUnsafeBufferPointer { xp in codes.withUnsafeMutableBufferPointer { pq.encode(xp.baseAddress!, into: $0.baseAddress!) } }
                for s in 0..<m {
                    var best = 0, bestDist = Double.infinity
                    for c in 0..<256 {
                        var dist = 0.0
                        for t in 0..<ds { let e = Double(x[s * ds + t]) - Double(pq.centroids[(s * 256 + c) * ds + t]); dist += e * e }
                        if dist < bestDist { bestDist = dist; best = c }
                    }
                    var chosen = 0.0
                    for t in 0..<ds { let e = Double(x[s * ds + t]) - Double(pq.centroids[(s * 256 + Int(codes[s])) * ds + t]); chosen += e * e }
                    XCTAssertEqual(chosen, bestDist, accuracy: 1e-4, "d \(d) m \(m) subspace \(s): code \(codes[s]) vs nearest \(best)")
                }
            }
        }
    }

    /// k-means recovers well-separated clusters: data drawn around 200 centres per subspace
    /// is encoded with a small error, and the codebook survives serialisation.
    func testPQTrainingRecoversClustersAndRoundTrips() throws {
        var rng = TestRNG(seed: 25)
        let d = 16, m = 2, ds = 8, centres = 200
        let truth = (0..<(m * centres * ds)).map { _ in rng.gaussian() * 10 }
        var rows: [Float] = []
        for _ in 0..<4000 {
            for s in 0..<m {
                let c = rng.int(0..<centres)
                for t in 0..<ds { rows.append(truth[(s * centres + c) * ds + t] + rng.gaussian() * 0.01) }
            }
        }
        let pq = try ProductQuantizer.train(rows: rows, dimension: d, subspaces: m, iterations: 15)
        var worst: Float = 0
        for r in 0..<200 {
            var codes = [UInt8](repeating: 0, count: m)
            rows.withUnsafeBufferPointer { p in codes.withUnsafeMutableBufferPointer { pq.encode(p.baseAddress! + r * d, into: $0.baseAddress!) } }
            let back = codes.withUnsafeBytes { pq.decode($0) }
            for k in 0..<d { worst = max(worst, abs(back[k] - rows[r * d + k])) }
        }
        // Random initial centres can merge two clusters and split another; most rows are exact.
        XCTAssertLessThan(worst, 30)
        var exact = 0
        for r in 0..<1000 {
            var codes = [UInt8](repeating: 0, count: m)
            rows.withUnsafeBufferPointer { p in codes.withUnsafeMutableBufferPointer { pq.encode(p.baseAddress! + r * d, into: $0.baseAddress!) } }
            let back = codes.withUnsafeBytes { pq.decode($0) }
            if (0..<d).allSatisfy({ abs(back[$0] - rows[r * d + $0]) < 0.1 }) { exact += 1 }
        }
        XCTAssertGreaterThan(exact, 900, "rows reconstructed within 0.1")
        XCTAssertEqual(try ProductQuantizer(serialized: pq.serialized()), pq)
        var bad = pq.serialized()
        bad.removeLast()
        XCTAssertThrowsError(try ProductQuantizer(serialized: bad))
        XCTAssertThrowsError(try ProductQuantizer.train(rows: rows, dimension: d, subspaces: 3))
    }
}
