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

    func testReportsKernelLevel() {
        XCTAssertTrue((0...2).contains(m3_kernel_level()))
    }
}
