import CM3Kernels
import Foundation
import XCTest

/// The dispatched (SIMD) encoder kernels against their portable references and libm.
final class EncoderKernelTests: XCTestCase {
    func randomValues(_ n: Int, scale: Float, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    func testGELUMatchesErfReference() {
        for cols in [1, 15, 16, 17, 4096] {
            let x = randomValues(3 * cols, scale: 8, seed: UInt64(cols)) + [0, -0.0, 1e-8, -30, 30]
            let rows = 1, n = x.count
            var fast = x, slow = x
            let bias = [Float](repeating: 0, count: n)
            m3_bias_gelu(&fast, bias, rows, n)
            m3_bias_gelu_reference(&slow, bias, rows, n)
            for i in 0..<n {
                // Exact GELU from Double erf.
                let v = Double(x[i]), exact = 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
                XCTAssertEqual(Double(fast[i]), exact, accuracy: 2e-7 * max(1, abs(exact)), "x = \(x[i])")
                XCTAssertEqual(Double(slow[i]), exact, accuracy: 2e-7 * max(1, abs(exact)), "x = \(x[i])")
            }
        }
    }

    func testSoftmaxMatchesReference() {
        for cols in [1, 7, 16, 33, 512, 1000] {
            let x = randomValues(4 * cols, scale: 20, seed: UInt64(cols) + 99)
            var fast = x, slow = x
            m3_softmax_rows(&fast, 4, cols)
            m3_softmax_rows_reference(&slow, 4, cols)
            for r in 0..<4 {
                let row = x[r * cols ..< (r + 1) * cols].map(Double.init)
                let mx = row.max()!, sum = row.reduce(0) { $0 + exp($1 - mx) }
                for c in 0..<cols {
                    let exact = exp(row[c] - mx) / sum
                    XCTAssertEqual(Double(fast[r * cols + c]), exact, accuracy: 1e-6 * max(exact, 1e-6))
                    XCTAssertEqual(Double(slow[r * cols + c]), exact, accuracy: 1e-6 * max(exact, 1e-6))
                }
            }
        }
    }

    func testLayerNormMatchesDoublePrecision() {
        for cols in [1, 7, 8, 20, 1024, 1030] {
            let rows = 3
            let x = randomValues(rows * cols, scale: 6, seed: UInt64(cols) + 7).map { $0 + 3 }  // off-centre rows
            let residual = randomValues(rows * cols, scale: 2, seed: UInt64(cols) + 8)
            let gamma = randomValues(cols, scale: 1, seed: 9).map { $0 + 1 }, beta = randomValues(cols, scale: 0.5, seed: 10)
            for withResidual in [true, false] {
                var fast = x, slow = x
                if withResidual {
                    m3_add_layernorm(&fast, residual, rows, cols, gamma, beta, 1e-5)
                    m3_add_layernorm_reference(&slow, residual, rows, cols, gamma, beta, 1e-5)
                } else {
                    m3_add_layernorm(&fast, nil, rows, cols, gamma, beta, 1e-5)
                    m3_add_layernorm_reference(&slow, nil, rows, cols, gamma, beta, 1e-5)
                }
                for r in 0..<rows {
                    let v = (0..<cols).map { Double(x[r * cols + $0]) + (withResidual ? Double(residual[r * cols + $0]) : 0) }
                    let mean = v.reduce(0, +) / Double(cols)
                    let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(cols)
                    for c in 0..<cols {
                        let exact = (v[c] - mean) / (variance + 1e-5).squareRoot() * Double(gamma[c]) + Double(beta[c])
                        XCTAssertEqual(Double(fast[r * cols + c]), exact, accuracy: 2e-6 * max(1, abs(exact)), "cols \(cols) (\(r), \(c))")
                        XCTAssertEqual(Double(slow[r * cols + c]), exact, accuracy: 2e-6 * max(1, abs(exact)), "cols \(cols) reference")
                    }
                }
            }
        }
    }

    func testReportsKernelLevel() {
        XCTAssertTrue((0...2).contains(m3_kernel_level()))
    }
}

/// m3_f32_linear (the short path's float32 linear layer) against a double-precision x·Wᵀ + b
/// and against its portable version, which sums in the same order and so gives the same bits.
final class ShortLinearKernelTests: XCTestCase {
    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// y (m, ldy) over columns j0..<j1; the other columns keep `fill`.
    func linear(_ x: [Float], m: Int, k: Int, ldx: Int, _ w: [Float], ldw: Int, _ bias: [Float]?, n: Int, ldy: Int,
                columns: Range<Int>, portable: Bool = false, level: Int32? = nil, fill: Float = .nan) -> [Float] {
        var y = [Float](repeating: fill, count: m * ldy)
        let f = portable ? m3_f32_linear_reference : m3_f32_linear
        if let level, let bias {
            m3_f32_linear_isa(level, x, m, k, ldx, w, ldw, bias, &y, ldy, columns.lowerBound, columns.upperBound)
        } else if let level {
            m3_f32_linear_isa(level, x, m, k, ldx, w, ldw, nil, &y, ldy, columns.lowerBound, columns.upperBound)
        } else if let bias {
            f(x, m, k, ldx, w, ldw, bias, &y, ldy, columns.lowerBound, columns.upperBound)
        } else {
            f(x, m, k, ldx, w, ldw, nil, &y, ldy, columns.lowerBound, columns.upperBound)
        }
        return y
    }

    /// Shapes off every block size: rows not a multiple of the 4- or 8-row tile (or of the L2
    /// block, up to 256 rows), columns not of the 3- or 6-column group, k not of 8 or 16 (the
    /// masked tail), k long enough to be cut into slices whose chains carry across calls.
    let shapes = [(1, 1, 1), (3, 5, 7), (4, 3, 8), (5, 7, 17), (9, 10, 33), (17, 130, 257), (6, 64, 1024),
                  (70, 9, 4100), (300, 13, 1030)]

    func testMatchesDoublePrecisionAndPortableBitForBit() {
        for (m, n, k) in shapes {
            let x = random(m * k, seed: UInt64(m * 31 + k)), w = random(n * k, seed: UInt64(n * 17 + k), scale: 0.1)
            let b = random(n, seed: UInt64(n))
            let fast = linear(x, m: m, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: 0..<n)
            let slow = linear(x, m: m, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: 0..<n, portable: true)
            XCTAssertEqual(fast.map(\.bitPattern), slow.map(\.bitPattern), "m \(m) n \(n) k \(k): SIMD and portable differ")
            // Each instruction-set level this CPU has (AVX2's 4×3 tiles, AVX-512's 4×6 of row pairs).
            for level in Int32(0)...2 {
                let at = linear(x, m: m, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: 0..<n, level: level)
                XCTAssertEqual(at.map(\.bitPattern), slow.map(\.bitPattern), "m \(m) n \(n) k \(k): level \(level) and portable differ")
            }
            var worst = 0.0
            for r in 0..<m {
                for j in 0..<n {
                    var exact = Double(b[j]), magnitude = abs(Double(b[j]))
                    for c in 0..<k {
                        exact += Double(x[r * k + c]) * Double(w[j * k + c])
                        magnitude += abs(Double(x[r * k + c]) * Double(w[j * k + c]))
                    }
                    // float32 sums of ⌈k/8⌉ + 4 terms per output: ≤ (k/8 + 5)·2⁻²⁴ of Σ|x·w|.
                    let bound = (Double(k) / 8 + 5) * pow(2.0, -24) * magnitude * 1.01
                    let err = abs(Double(fast[r * n + j]) - exact)
                    worst = max(worst, err / max(magnitude, 1e-30))
                    XCTAssertLessThanOrEqual(err, bound, "m \(m) n \(n) k \(k) at (\(r), \(j))")
                }
            }
            print("m3_f32_linear m \(m) n \(n) k \(k): max |Δ| / Σ|x·w| = \(worst)")
        }
    }

    /// A row's outputs never depend on the other rows of the call, nor on the column range
    /// (the short path's promise that a query's outputs do not depend on its batch).
    func testRowsAndColumnRangesAreIndependent() {
        let (m, n, k) = (23, 50, 1030)
        let x = random(m * k, seed: 1), w = random(n * k, seed: 2, scale: 0.05), b = random(n, seed: 3)
        let together = linear(x, m: m, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: 0..<n)
        for r in 0..<m {
            let row = Array(x[r * k ..< (r + 1) * k])
            let alone = linear(row, m: 1, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: 0..<n)
            XCTAssertEqual(alone.map(\.bitPattern), together[r * n ..< (r + 1) * n].map(\.bitPattern), "row \(r)")
        }
        var pieces = [Float](repeating: .nan, count: m * n)
        for (j0, j1) in [(0, 1), (1, 8), (8, 29), (29, 50)] {
            let part = linear(x, m: m, k: k, ldx: k, w, ldw: k, b, n: n, ldy: n, columns: j0..<j1)
            for r in 0..<m { for j in j0..<j1 { pieces[r * n + j] = part[r * n + j] } }
        }
        XCTAssertEqual(pieces.map(\.bitPattern), together.map(\.bitPattern))
    }

    /// Row strides wider than k; columns outside j0..<j1 untouched; no bias means no bias.
    func testStridesRangeAndMissingBias() {
        let (m, n, k) = (6, 11, 40), ldx = 45, ldw = 47, ldy = 13
        let x = random(m * ldx, seed: 4), w = random(n * ldw, seed: 5)
        let y = linear(x, m: m, k: k, ldx: ldx, w, ldw: ldw, nil, n: n, ldy: ldy, columns: 2..<9, fill: 7)
        for r in 0..<m {
            for j in 0..<ldy {
                guard (2..<9).contains(j) else { XCTAssertEqual(y[r * ldy + j], 7); continue }
                var exact = 0.0
                for c in 0..<k { exact += Double(x[r * ldx + c]) * Double(w[j * ldw + c]) }
                XCTAssertEqual(Double(y[r * ldy + j]), exact, accuracy: 1e-5)
            }
        }
        XCTAssertEqual(y.map(\.bitPattern),
                       linear(x, m: m, k: k, ldx: ldx, w, ldw: ldw, nil, n: n, ldy: ldy, columns: 2..<9,
                              portable: true, fill: 7).map(\.bitPattern))
    }
}

/// m3_attention_head (the short path's attention) against softmax attention in double.
final class ShortAttentionKernelTests: XCTestCase {
    func testMatchesDoublePrecisionAttention() {
        for (len, d, ld) in [(1, 8, 8), (3, 8, 24), (16, 64, 1024), (37, 64, 130), (5, 12, 12)] {
            var state = UInt64(len * 1000 + d)
            func next() -> Float {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(state >> 40) / Float(1 << 24) * 4 - 2
            }
            let q = (0..<len * ld).map { _ in next() }, k = (0..<len * ld).map { _ in next() }
            let v = (0..<len * ld).map { _ in next() }
            let scale = 1 / Float(d).squareRoot()
            var fast = [Float](repeating: .nan, count: len * ld), slow = fast
            var scores = [Float](repeating: 0, count: len)
            m3_attention_head(q, k, v, ld, len, d, scale, &fast, &scores)
            m3_attention_head_reference(q, k, v, ld, len, d, scale, &slow, &scores)
            for i in 0..<len {
                let s = (0..<len).map { j in (0..<d).reduce(0.0) { $0 + Double(q[i * ld + $1]) * Double(k[j * ld + $1]) } * Double(scale) }
                let mx = s.max()!, e = s.map { exp($0 - mx) }, sum = e.reduce(0, +)
                for c in 0..<d {
                    let exact = (0..<len).reduce(0.0) { $0 + e[$1] / sum * Double(v[$1 * ld + c]) }
                    XCTAssertEqual(Double(fast[i * ld + c]), exact, accuracy: 1e-5, "len \(len) d \(d) (\(i), \(c))")
                    XCTAssertEqual(Double(slow[i * ld + c]), exact, accuracy: 1e-5, "len \(len) d \(d) (\(i), \(c)) reference")
                }
                // Columns outside the head are never written.
                if d < ld { XCTAssertTrue(fast[i * ld + d].isNaN) }
            }
        }
    }
}
