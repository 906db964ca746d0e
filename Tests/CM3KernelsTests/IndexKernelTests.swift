import CM3Kernels
import Foundation
import XCTest

/// Every kernel version this CPU has, against a plain Swift loop in double precision.
final class IndexKernelTests: XCTestCase {
    let lengths = [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 128, 1000, 1024, 1031]

    var levels: [Int32] { Array(0...m3ix_isa_level()) }

    func testDotF32MatchesReferenceAtEveryLevel() {
        var rng = TestRNG(seed: 11)
        print("index kernels: best level \(m3ix_isa_level())")
        for level in levels {
            var worst: Double = 0
            for n in lengths {
                // One extra float in front so the SIMD loads are unaligned.
                let a = (0...n).map { _ in rng.gaussian() }, b = (0...n).map { _ in rng.gaussian() }
                var ref: Double = 0, mag: Double = 0
                for i in stride(from: 1, through: n, by: 1) { ref += Double(a[i]) * Double(b[i]); mag += abs(Double(a[i]) * Double(b[i])) }
                let got = a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in m3ix_dot_f32_isa(level, pa.baseAddress! + 1, pb.baseAddress! + 1, n) }
                }
                let err = abs(Double(got) - ref)
                XCTAssertLessThanOrEqual(err, 2e-6 * mag + 1e-30, "level \(level) n \(n)")
                if mag > 0 { worst = max(worst, err / mag) }
            }
            print("dot f32 level \(level): max |error| / Σ|a·b| = \(worst)")
        }
    }

    func testDotF32F16MatchesReferenceAtEveryLevel() {
        var rng = TestRNG(seed: 12)
        for level in levels {
            var worst: Double = 0
            for n in lengths {
                let q = (0...n).map { _ in rng.gaussian() }
                // Random finite halves, subnormals and zeros included.
                let h: [UInt16] = (0...n).map { _ in
                    let sign = UInt16(rng.int(0..<2)) << 15
                    let exp = UInt16(rng.int(0..<31)) << 10
                    return sign | exp | UInt16(rng.int(0..<1024))
                }
                var ref: Double = 0, mag: Double = 0
                for i in stride(from: 1, through: n, by: 1) {
                    ref += Double(q[i]) * halfToDouble(h[i])
                    mag += abs(Double(q[i]) * halfToDouble(h[i]))
                }
                let got = q.withUnsafeBufferPointer { pq in
                    h.withUnsafeBufferPointer { ph in m3ix_dot_f32_f16_isa(level, pq.baseAddress! + 1, ph.baseAddress! + 1, n) }
                }
                let err = abs(Double(got) - ref)
                XCTAssertLessThanOrEqual(err, 2e-6 * mag + 1e-30, "level \(level) n \(n)")
                if mag > 0 { worst = max(worst, err / mag) }
            }
            print("dot f32·f16 level \(level): max |error| / Σ|q·h| = \(worst)")
        }
    }

    /// Every finite half converts exactly: a one-hot query picks out one value, in blocks of
    /// 32 so the SIMD conversion paths (not only the scalar tail) see every bit pattern.
    func testEveryFiniteHalfConvertsExactly() {
        let finite = (0...UInt16.max).filter { ($0 >> 10) & 0x1f != 0x1f }
        for level in levels {
            var mismatches = 0
            var q = [Float](repeating: 0, count: 32)
            var block = [UInt16](repeating: 0, count: 32)
            var start = 0
            while start < finite.count {
                for j in 0..<32 { block[j] = finite[min(start + j, finite.count - 1)] }
                for j in 0..<32 {
                    q[j] = 1
                    let got = m3ix_dot_f32_f16_isa(level, q, block, 32)
                    q[j] = 0
                    if Double(got) != halfToDouble(block[j]) && !(got == 0 && halfToDouble(block[j]) == 0) { mismatches += 1 }
                }
                start += 32
            }
            XCTAssertEqual(mismatches, 0, "level \(level)")
        }
    }

    /// MaxSim against a double-precision loop, for row counts and dimensions that exercise
    /// the 4×4 blocks' repeated edge rows and the d tail, at every level.
    func testMaxSimMatchesReferenceAtEveryLevel() {
        var rng = TestRNG(seed: 13)
        for level in levels {
            for (nq, np, d) in [(1, 1, 1), (3, 5, 17), (4, 4, 16), (5, 7, 33), (16, 32, 1024), (9, 2, 100), (32, 13, 64)] {
                let q = (0..<nq * d).map { _ in rng.gaussian() }
                let p = (0..<np * d).map { _ in rng.gaussian() }
                let h = p.map { Float16($0).bitPattern }
                func reference(_ row: (Int, Int) -> Double) -> Double {
                    var total = 0.0
                    for i in 0..<nq { total += (0..<np).map { row(i, $0) }.max()! }
                    return total / Double(nq)
                }
                let ref32 = reference { i, j in (0..<d).reduce(0.0) { $0 + Double(q[i * d + $1]) * Double(p[j * d + $1]) } }
                let ref16 = reference { i, j in (0..<d).reduce(0.0) { $0 + Double(q[i * d + $1]) * halfToDouble(h[j * d + $1]) } }
                // Σ|q·p| ≤ d·max|q|·max|p|; the per-dot error bound of the dot tests, scaled.
                let tol = 2e-6 * Double(d) * 16 + 1e-6
                XCTAssertEqual(Double(m3ix_maxsim_f32_isa(level, q, nq, p, np, d)), ref32, accuracy: tol, "f32 level \(level) \(nq)×\(np)×\(d)")
                XCTAssertEqual(Double(m3ix_maxsim_f16_isa(level, q, nq, h, np, d)), ref16, accuracy: tol, "f16 level \(level) \(nq)×\(np)×\(d)")
            }
        }
        XCTAssertEqual(m3ix_maxsim_f16(nil, 0, nil, 0, 8), 0)
    }
}

/// IEEE binary16 bits → value, the textbook way.
func halfToDouble(_ h: UInt16) -> Double {
    let sign: Double = h & 0x8000 != 0 ? -1 : 1
    let exp = Int((h >> 10) & 0x1f)
    let mant = Double(h & 0x3ff)
    if exp == 0 { return sign * mant / 1024 * pow(2, -14) }
    return sign * (1 + mant / 1024) * pow(2, Double(exp - 15))
}
