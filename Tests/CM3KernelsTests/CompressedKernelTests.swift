import CM3Kernels
import Foundation
import XCTest
import M3TestSupport

/// The compressed-row MaxSim kernels (every level this CPU has) against plain Swift loops
/// in double precision over the values the rows stand for.
final class CompressedKernelTests: XCTestCase {
    var levels: [Int32] { Array(Set([Int32(M3IX_ISA_PORTABLE), m3ix_isa_level()])).sorted() }
    // Row shapes: query rows, passage rows, dimension (tails of 8 and ≠ 16 included).
    let shapes: [(Int, Int, Int)] = [(1, 1, 8), (3, 5, 16), (4, 4, 24), (5, 7, 40), (17, 9, 64), (32, 70, 1024), (2, 3, 1032)]

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

    func testInt8MaxSimMatchesReference() {
        var rng = TestRNG(seed: 21)
        for (nq, np, d) in shapes {
            let q = (0..<(nq * d)).map { _ in rng.gaussian() }
            let codes = (0..<(np * d)).map { _ in Int8(rng.int(-127..<128)) }
            let scales = (0..<np).map { _ in Float(rng.uniform() * 0.01 + 1e-4) }
            var values = [Double](repeating: 0, count: np * d)
            for j in 0..<np { for k in 0..<d { values[j * d + k] = Double(scales[j]) * Double(codes[j * d + k]) } }
            let ref = referenceMaxSim(q, values, nq: nq, np: np, d: d)
            for level in levels {
                let got = q.withUnsafeBufferPointer { pq in codes.withUnsafeBufferPointer { pc in scales.withUnsafeBufferPointer { ps in
                    m3cx_maxsim_i8_isa(level, pq.baseAddress, nq, pc.baseAddress, ps.baseAddress, np, d)
                } } }
                XCTAssertEqual(Double(got), ref, accuracy: 1e-5 * max(1, abs(ref)) * Double(d).squareRoot(), "level \(level) \(nq)×\(np)×\(d)")
            }
        }
    }

    func testSignBitMaxSimMatchesReference() {
        var rng = TestRNG(seed: 22)
        for (nq, np, d) in shapes {
            let q = (0..<(nq * d)).map { _ in rng.gaussian() }
            let bits = (0..<(np * d / 8)).map { _ in UInt8(rng.int(0..<256)) }
            let factors = (0..<np).map { _ in Float(rng.uniform() + 0.01) }
            var values = [Double](repeating: 0, count: np * d)
            for j in 0..<np {
                for k in 0..<d {
                    let set = (bits[j * d / 8 + k / 8] >> (k % 8)) & 1 == 1
                    values[j * d + k] = Double(factors[j]) * (set ? 1 : -1)
                }
            }
            let ref = referenceMaxSim(q, values, nq: nq, np: np, d: d)
            for level in levels {
                let got = q.withUnsafeBufferPointer { pq in bits.withUnsafeBufferPointer { pb in factors.withUnsafeBufferPointer { pf in
                    m3cx_maxsim_bits_isa(level, pq.baseAddress, nq, pb.baseAddress, pf.baseAddress, np, d)
                } } }
                XCTAssertEqual(Double(got), ref, accuracy: 1e-5 * max(1, abs(ref)) * Double(d).squareRoot(), "level \(level) \(nq)×\(np)×\(d)")
            }
        }
    }
}
