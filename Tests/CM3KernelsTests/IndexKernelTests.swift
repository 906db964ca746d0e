import CM3Kernels
import Foundation
import XCTest
import M3TestSupport

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

    /// float · int8 (rescoring int8 graph rows): every level within float rounding of the
    /// double-precision sum, extreme codes and unaligned starts included.
    func testDotF32S8MatchesReferenceAtEveryLevel() {
        var rng = TestRNG(seed: 16)
        for level in levels {
            for n in lengths {
                let q = (0...n).map { _ in rng.gaussian() }
                let c = (0...n).map { i in i % 5 == 0 ? Int8(i % 2 == 0 ? -128 : 127) : Int8(rng.int(0..<256) - 128) }
                var ref: Double = 0, mag: Double = 0
                for i in stride(from: 1, through: n, by: 1) {
                    ref += Double(q[i]) * Double(c[i])
                    mag += abs(Double(q[i]) * Double(c[i]))
                }
                let got = q.withUnsafeBufferPointer { pq in
                    c.withUnsafeBufferPointer { pc in m3ix_dot_f32_s8_isa(level, pq.baseAddress! + 1, pc.baseAddress! + 1, n) }
                }
                XCTAssertLessThanOrEqual(abs(Double(got) - ref), 2e-6 * mag + 1e-30, "level \(level) n \(n)")
            }
        }
        XCTAssertEqual(m3ix_dot_f32_s8([2, -1, 0.5], [3, 4, -128], 3), 6 - 4 - 64)
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

    /// The int8 dot products are exact integers: every level must equal the plain loop.
    func testInt8DotsAreExactAtEveryLevel() {
        var rng = TestRNG(seed: 14)
        print("int8 kernels: best level \(m3ix_i8_isa_level())")
        for level in 0...m3ix_i8_isa_level() {
            for n in lengths + [64, 65, 127, 255, 256, 257, 1024, 1088] {
                // One extra byte in front so the SIMD loads are unaligned; extremes included.
                let a = (0...n).map { _ in UInt8(rng.int(0..<256)) }
                let b = (0...n).map { i in i % 7 == 0 ? Int8(-127) : Int8(rng.int(0..<255) - 127) }
                let c = (0...n).map { _ in Int8(rng.int(0..<255) - 127) }
                var refUS: Int32 = 0, refSS: Int32 = 0
                for i in stride(from: 1, through: n, by: 1) {
                    refUS += Int32(a[i]) * Int32(b[i])
                    refSS += Int32(c[i]) * Int32(b[i])
                }
                let us = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
                    m3ix_dot_u8s8_isa(level, pa.baseAddress! + 1, pb.baseAddress! + 1, n) } }
                let ss = c.withUnsafeBufferPointer { pc in b.withUnsafeBufferPointer { pb in
                    m3ix_dot_s8s8_isa(level, pc.baseAddress! + 1, pb.baseAddress! + 1, n) } }
                XCTAssertEqual(us, refUS, "u8·s8 level \(level) n \(n)")
                XCTAssertEqual(ss, refSS, "s8·s8 level \(level) n \(n)")
            }
        }
    }

    /// Rows and queries: the quantiser matches the store's int8 rule (scale max|v|/127,
    /// round half away from zero); scores equal the exact math on the codes at every level;
    /// a query made from a row scores exactly as that row does; and the recorded errors are
    /// the real ones.
    func testInt8RowsAndQueries() {
        var rng = TestRNG(seed: 15)
        for d in [1, 3, 16, 63, 64, 100, 1024] {
            let bytes = m3ix_q8_row_bytes(d), meta = m3ix_q8_meta_offset(d)
            XCTAssertEqual(bytes % 64, 0)
            XCTAssertGreaterThanOrEqual(bytes, meta + 12)
            let x = normalized((0..<d).map { _ in rng.gaussian() })
            let y = normalized((0..<d).map { _ in rng.gaussian() })
            let q = (0..<d).map { _ in 0.5 * rng.gaussian() }
            var rx = [UInt8](repeating: 0xAA, count: bytes), ry = rx, rq = rx, rqx = rx
            XCTAssertEqual(m3ix_q8_encode_row(x, d, &rx), 0)
            XCTAssertEqual(m3ix_q8_encode_row(y, d, &ry), 0)
            let queryError = m3ix_q8_encode_query(q, d, &rq)
            m3ix_q8_query_from_row(rx, d, &rqx)

            func codes(_ v: [Float]) -> (scale: Float, c: [Int]) {
                let peak = v.map(abs).max()!
                let scale = peak / 127
                return (scale, v.map { Int(max(-127, min(127, ($0 / scale).rounded()))) })
            }
            let (_, cx) = codes(x), (_, cy) = codes(y), (sq, cq) = codes(q)
            XCTAssertEqual(rx.prefix(d).map { Int(Int8(bitPattern: $0)) }, cx, "d \(d) row codes")
            XCTAssertEqual(rq.prefix(d).map { Int($0) - 128 }, cq, "d \(d) query codes")
            func f32(_ r: [UInt8], _ o: Int) -> Float { r.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: Float.self) } }
            let fx = 1 / Double(cx.reduce(0) { $0 + $1 * $1 }).squareRoot()
            let fy = 1 / Double(cy.reduce(0) { $0 + $1 * $1 }).squareRoot()
            XCTAssertEqual(Double(f32(rx, meta)), fx, accuracy: fx * 1e-6)
            XCTAssertEqual(rx.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: meta + 4, as: Int32.self) }, Int32(cx.reduce(0, +)))
            let residual = zip(x, cx).reduce(0.0) { $0 + pow(Double($1.0) - fx * Double($1.1), 2) }.squareRoot()
            XCTAssertEqual(Double(f32(rx, meta + 8)), residual, accuracy: 1e-6)
            let qErr = zip(q, cq).reduce(0.0) { $0 + pow(Double($1.0) - Double(sq) * Double($1.1), 2) }.squareRoot()
            XCTAssertEqual(Double(queryError), qErr, accuracy: 1e-5)

            let dotQX = Double(zip(cq, cx).reduce(0) { $0 + $1.0 * $1.1 })
            let dotXY = Double(zip(cx, cy).reduce(0) { $0 + $1.0 * $1.1 })
            var previous: (Float, Float)?
            for level in 0...m3ix_i8_isa_level() {
                let sQX = m3ix_score_q8_isa(level, rq, rx, d)
                let sXY = m3ix_score_q8_rows_isa(level, rx, ry, d)
                XCTAssertEqual(Double(sQX), dotQX * Double(sq) * fx, accuracy: 1e-5 * max(1, abs(dotQX * Double(sq) * fx)))
                XCTAssertEqual(Double(sXY), dotXY * fx * fy, accuracy: 1e-6)
                // A query made from row x scores y exactly as x does, and the order does not matter.
                XCTAssertEqual(m3ix_score_q8_isa(level, rqx, ry, d), sXY, "d \(d) level \(level)")
                XCTAssertEqual(m3ix_score_q8_rows_isa(level, ry, rx, d), sXY, "d \(d) level \(level)")
                if let previous { XCTAssertTrue(previous == (sQX, sXY), "levels disagree at d \(d)") }
                previous = (sQX, sXY)
            }
        }
        var zero = [UInt8](repeating: 0, count: m3ix_q8_row_bytes(8))
        XCTAssertEqual(m3ix_q8_encode_row([Float](repeating: 0, count: 8), 8, &zero), -1)
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

/// `v` scaled to unit length (as M3IndexTests' helper).
private func normalized(_ v: [Float]) -> [Float] {
    var ss: Double = 0
    for x in v { ss += Double(x) * Double(x) }
    let inv = Float(1 / ss.squareRoot())
    return v.map { $0 * inv }
}
