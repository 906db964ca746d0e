import CM3Kernels
import Foundation
@testable import M3Model
import XCTest

/// The int8 / bf16 GEMM kernels against a double-precision x·Wᵀ + b, with error bounds
/// derived from the quantization steps; then the encoder in each precision against float32.
final class LowPrecisionTests: XCTestCase {
    func random(_ n: Int, seed: UInt64, low: Float = -1, high: Float = 1) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return low + (high - low) * Float(state >> 40) / Float(1 << 24)
        }
    }

    /// (M, N, K) off every block size: rows not a multiple of the 6-row tile, columns not
    /// of the 64-column panel, k not of 4 (int8) or 2 (bf16).
    let shapes = [(1, 1, 1), (5, 63, 3), (7, 65, 13), (6, 64, 8), (13, 130, 31), (37, 200, 257)]

    /// y (m, n) = x·Wᵀ + b in double, and Σ_k |x|·|W| per output (for relative bounds).
    func reference(_ x: [Float], _ w: [Float], _ b: [Float], m: Int, n: Int, k: Int) -> (y: [Double], abs: [Double]) {
        var y = [Double](repeating: 0, count: m * n), a = y
        for r in 0..<m {
            for j in 0..<n {
                var s = Double(b[j]), t = 0.0
                for c in 0..<k { s += Double(x[r * k + c]) * Double(w[j * k + c]); t += abs(Double(x[r * k + c]) * Double(w[j * k + c])) }
                y[r * n + j] = s
                a[r * n + j] = t
            }
        }
        return (y, a)
    }

    func testInt8GEMMWithinQuantizationBound() {
        for (m, n, k) in shapes {
            for asymmetric: Int32 in [1, 0] {
                // Skewed activations, like GELU outputs, and one row of zeros.
                var x = random(m * k, seed: UInt64(m * 1000 + k), low: -0.2, high: 3)
                for c in 0..<k { x[c] = 0 }
                let w = random(n * k, seed: UInt64(n * 7 + k), low: -0.05, high: 0.05)
                let b = random(n, seed: 99)
                let y = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: asymmetric, split: false)
                let (exact, _) = reference(x, w, b, m: m, n: n, k: k)
                for r in 0..<m {
                    let row = x[r * k ..< (r + 1) * k]
                    let lo = min(row.min()!, 0), hi = max(row.max()!, 0)
                    // Activation step: the row's range over 255 levels (or ±max|x| over 127).
                    let sx = Double(asymmetric == 1 ? (hi - lo) / 255 : max(-lo, hi) / 127)
                    for j in 0..<n {
                        let wr = w[j * k ..< (j + 1) * k]
                        let sw = Double(wr.map(abs).max()!) / 127
                        // |xw − x̂ŵ| ≤ |x|·sw/2 + |w|·sx/2 + sx·sw/4 per term, plus float32 rounding.
                        var bound = 0.0
                        for c in 0..<k {
                            bound += abs(Double(x[r * k + c])) * sw / 2 + abs(Double(w[j * k + c])) * sx / 2 + sx * sw / 4
                        }
                        bound = bound * 1.001 + 1e-6 * (abs(exact[r * n + j]) + 1)
                        XCTAssertLessThanOrEqual(abs(Double(y[r * n + j]) - exact[r * n + j]), bound,
                                                 "int8 m \(m) n \(n) k \(k) asym \(asymmetric) at (\(r), \(j))")
                    }
                }
                // Splitting the column panels between calls (one per core) changes nothing.
                XCTAssertEqual(int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: asymmetric, split: true), y)
            }
        }
    }

    /// The VNNI kernel sums exactly the integers the portable loop sums.
    func testInt8KernelMatchesPortableLoop() {
        let (m, n, k) = (37, 200, 257)
        let x = random(m * k, seed: 5), w = random(n * k, seed: 6), b = random(n, seed: 7)
        let fast = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: 1, split: false)
        let slow = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: 1, split: false, portable: true)
        for i in 0..<fast.count { XCTAssertEqual(fast[i], slow[i], accuracy: 1e-5 * max(1, abs(slow[i]))) }
    }

    /// Every row count a tile split can meet (1…17: partial 6-row tiles, 2–3 tiles sharing a
    /// panel's prefetch; 128: a batch), odd n and k: the SIMD kernel sums exactly the portable
    /// loop's integers.
    func testInt8KernelMatchesPortableLoopAtEveryRowCount() {
        for (n, k) in [(65, 13), (130, 257)] {
            for m in Array(1...17) + [128] {
                let x = random(m * k, seed: UInt64(m * 3 + k), low: -0.3, high: 2), w = random(n * k, seed: UInt64(n + k))
                let b = random(n, seed: 11)
                let fast = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: 1, split: true)
                let slow = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: 1, split: false, portable: true)
                for i in 0..<fast.count {
                    XCTAssertEqual(fast[i], slow[i], accuracy: 1e-5 * max(1, abs(slow[i])), "m \(m) n \(n) k \(k) at \(i)")
                }
            }
        }
    }

    /// int16 (the int8 mode's feed-forward up-projection) against double x·Wᵀ + b: within the
    /// bound of its quantization steps (x: max|x| over m3_i16_activation_limit(k) levels, W:
    /// max|W| over 2047), and at least 5 times closer than int8 on the same data.
    func testInt16GEMMWithinQuantizationBound() {
        for (m, n, k) in shapes + [(16, 96, 1024)] {
            var x = random(m * k, seed: UInt64(m * 31 + k), low: -3, high: 2.5)
            for c in 0..<k { x[c] = 0 }  // a row of zeros
            let w = random(n * k, seed: UInt64(n * 5 + k), low: -0.05, high: 0.05)
            let b = random(n, seed: 3)
            let (exact, magnitude) = reference(x, w, b, m: m, n: n, k: k)
            let packed = PackedMatrix(w, out: n, in: k, arithmetic: .int16)!
            let scratch = ConversionScratch(rows: m, inFeatures: k)
            var y = [Float](repeating: .nan, count: m * n)
            packed.multiply(x, rows: m, bias: b, into: &y, scratch: scratch.bytes(rows: m, inFeatures: k))
            let plain = int8GEMM(x, w, b, m: m, n: n, k: k, asymmetric: 1, split: false)
            let limit = Double(m3_i16_activation_limit(k))
            var worst16 = 0.0, worst8 = 0.0
            for r in 0..<m {
                let sx = Double(x[r * k ..< (r + 1) * k].map(abs).max()!) / limit
                for j in 0..<n {
                    let sw = Double(w[j * k ..< (j + 1) * k].map(abs).max()!) / 2047
                    // |xw − x̂ŵ| ≤ |x|·sw/2 + (|w| + sw/2)·sx/2 per term, plus float32 rounding.
                    var bound = 0.0
                    for c in 0..<k {
                        bound += abs(Double(x[r * k + c])) * sw / 2 + (abs(Double(w[j * k + c])) + sw / 2) * sx / 2
                    }
                    bound = bound * 1.001 + 1e-6 * (magnitude[r * n + j] + abs(exact[r * n + j]) + 1)
                    let e = abs(Double(y[r * n + j]) - exact[r * n + j])
                    XCTAssertLessThanOrEqual(e, bound, "int16 m \(m) n \(n) k \(k) at (\(r), \(j))")
                    worst16 = max(worst16, e)
                    worst8 = max(worst8, abs(Double(plain[r * n + j]) - exact[r * n + j]))
                }
            }
            if k >= 8 {  // (k = 1, 3: one or three terms, int8 may round exactly)
                XCTAssertLessThan(worst16 * 5, worst8, "int16 m \(m) n \(n) k \(k)")
            }
            // Splitting the column panels between calls (one per core) changes nothing.
            var split = [Float](repeating: .nan, count: m * n)
            let bytes = scratch.bytes(rows: m, inFeatures: k)
            packed.convert(x, rows: m, into: bytes)
            let panels = packed.panelCount
            for range in [0 ..< panels / 2, panels / 2 ..< panels] {
                packed.multiplyConverted(rows: m, scratch: bytes, bias: b, into: &split, panels: range)
            }
            XCTAssertEqual(split, y, "panel split m \(m) n \(n) k \(k)")
        }
    }

    /// The activation quantization is its documented formula: scale = max|x| / limit, q = x / scale
    /// rounded to nearest even; the pad element is 0.
    func testInt16ActivationQuantization() {
        for k in [1, 7, 16, 33, 1024] {
            let m = 5
            var x = random(m * k, seed: UInt64(k), low: -4, high: 3)
            for c in 0..<k { x[c] = 0 }
            let ldq = m3_i16_row_stride(k)
            var q = [Int16](repeating: 0x5555, count: m * ldq), scale = [Float](repeating: .nan, count: m)
            m3_i16_quantize_rows(x, m, k, k, &q, ldq, &scale)
            let limit = Float(m3_i16_activation_limit(k))
            for r in 0..<m {
                let amax = x[r * k ..< (r + 1) * k].map(abs).max()!
                let s: Float = amax > 0 ? amax / limit : 1
                XCTAssertEqual(scale[r], s, "k \(k) row \(r)")
                for c in 0..<k {
                    let v = min(limit, max(-limit, (x[r * k + c] * (1 / s)).rounded(.toNearestOrEven)))
                    XCTAssertEqual(q[r * ldq + c], Int16(v), "k \(k) at (\(r), \(c))")
                }
                for c in k..<ldq { XCTAssertEqual(q[r * ldq + c], 0) }
            }
        }
    }

    /// Every kernel this CPU has (portable, AVX2, AVX512-VNNI) gives the same bits, for every
    /// row count a tile split can meet (1…17, 128), odd n and k, and panel splits; and at the
    /// limits (every |q| at its maximum, up to k = 65 536) the int32 sums stay exact.
    func testInt16KernelsAgreeAndNeverOverflow() {
        let levels = Array(0...Int(m3_i16_gemm_level()))
        XCTAssertEqual(m3_i16_gemm_level(), m3_cpu_has_avx512_vnni() != 0 ? 2 : m3_i8_gemm_is_fast() != 0 ? 1 : 0)
        func run(_ x: [Float], _ w: [Float], _ b: [Float]?, m: Int, n: Int, k: Int, level: Int, split: Bool) -> [Float] {
            let packed = m3_i16_pack(w, n, k)!
            defer { m3_i16_free(packed) }
            let ldq = m3_i16_row_stride(k)
            var q = [Int16](repeating: 0, count: m * ldq), scale = [Float](repeating: 0, count: m)
            m3_i16_quantize_rows(x, m, k, k, &q, ldq, &scale)
            var y = [Float](repeating: .nan, count: m * n)
            let panels = m3_i16_panels(packed)
            for (p0, p1) in split ? [(0, panels / 2), (panels / 2, panels)] : [(0, panels)] {
                m3_i16_gemm_at(Int32(level), packed, q, ldq, scale, m, b, &y, n, p0, p1)
            }
            return y
        }
        for (n, k) in [(65, 13), (130, 257), (200, 1030)] {
            for m in Array(1...17) + [128] {
                let x = random(m * k, seed: UInt64(m * 3 + k), low: -0.3, high: 2), w = random(n * k, seed: UInt64(n + k))
                let b = random(n, seed: 11)
                let portable = run(x, w, b, m: m, n: n, k: k, level: 0, split: false)
                for level in levels {
                    XCTAssertEqual(run(x, w, b, m: m, n: n, k: k, level: level, split: true), portable, "level \(level) m \(m) n \(n) k \(k)")
                }
                XCTAssertEqual(run(x, w, nil, m: m, n: n, k: k, level: levels.last!, split: false),
                               run(x, w, nil, m: m, n: n, k: k, level: 0, split: false), "no bias, m \(m) n \(n) k \(k)")
            }
        }
        for k in [1024, 4096, 65536] {
            // Every term at ±max: Σ|q| products is the largest sum the limits allow.
            let (m, n) = (2, 3)
            let x = (0..<m * k).map { i in i < k ? Float(1) : Float(-1) }, w = (0..<n * k).map { _ in Float(0.5) }
            let portable = run(x, w, nil, m: m, n: n, k: k, level: 0, split: false)
            for (i, v) in portable.enumerated() {
                XCTAssertEqual(Double(v), i < n ? 0.5 * Double(k) : -0.5 * Double(k), accuracy: 1e-5 * Double(k), "k \(k) at \(i)")
            }
            for level in levels { XCTAssertEqual(run(x, w, nil, m: m, n: n, k: k, level: level, split: false), portable, "k \(k) level \(level)") }
        }
        XCTAssertGreaterThan(m3_i16_activation_limit(PackedMatrix.int16MaxInFeatures), 1)
        XCTAssertEqual(m3_i16_activation_limit(1 << 21), 0)
        XCTAssertNil(m3_i16_pack([Float](repeating: 1, count: 1 << 21), 1, 1 << 21))
    }

    func testBF16GEMMWithinRoundingBound() {
        for (m, n, k) in shapes {
            let x = random(m * k, seed: UInt64(m + k), low: -2, high: 2)
            let w = random(n * k, seed: UInt64(n + 3 * k), low: -0.1, high: 0.1)
            let b = random(n, seed: 11)
            let y = bf16GEMM(x, w, b, m: m, n: n, k: k, split: false)
            let (exact, magnitude) = reference(x, w, b, m: m, n: n, k: k)
            // Each operand rounded to 8 significant bits (relative error ≤ 2⁻⁹), so a product
            // is off by ≤ (2⁻⁸ + 2⁻¹⁸)·|xw|; float32 sums add ≤ k·2⁻²⁴ of Σ|xw|.
            let relative = pow(2.0, -8) + pow(2.0, -18) + Double(k + 1) * pow(2.0, -24)
            for i in 0..<m * n {
                let bound = magnitude[i] * relative * 1.001 + 1e-7 * abs(exact[i]) + 1e-7
                XCTAssertLessThanOrEqual(abs(Double(y[i]) - exact[i]), bound, "bf16 m \(m) n \(n) k \(k) at \(i)")
            }
            XCTAssertEqual(bf16GEMM(x, w, b, m: m, n: n, k: k, split: true), y)
            let slow = bf16GEMM(x, w, b, m: m, n: n, k: k, split: false, portable: true)
            for i in 0..<y.count { XCTAssertEqual(y[i], slow[i], accuracy: Float(magnitude[i]) * 1e-6 + 1e-6) }
        }
    }

    // MARK: - Encoder

    /// Against FlagEmbedding's float32 outputs for the tiny models (Fixtures/reference). The
    /// tiny model (H = 16) has few terms per sum, so its bounds are looser than the full
    /// model's (dense cosine 0.9993 int8, 0.99996 bf16; see BENCHMARKS.md).
    func testEncoderInReducedPrecisionStaysCloseToFloat32() throws {
        for (name, precisions) in [("tiny-safetensors", [Precision.int8, .bfloat16]), ("tiny-bin", [.int8])] {
            let reference = try Fixtures.reference(name)
            let block = reference.encodings[0]
            for precision in precisions {
                let model = try BGEM3(folder: Fixtures.model(name), precision: precision)
                XCTAssertEqual(model.precision, precision.resolved().precision)
                let out = try model.encode(block.items.map(\.text), options: EncodeOptions(maxLength: block.maxLength))
                for (a, item) in zip(out, block.items) {
                    XCTAssertEqual(a.tokenIDs, item.inputIDs)
                    XCTAssertGreaterThan(cosine(a.dense!, item.dense), precision == .int8 ? 0.98 : 0.9995,
                                         "\(name) \(precision) dense, \(item.name)")
                    for (r, row) in item.colbert.enumerated() where r < a.colbert!.count {
                        XCTAssertGreaterThan(cosine(Array(a.colbert![r]), row), precision == .int8 ? 0.97 : 0.999,
                                             "\(name) \(precision) colbert row \(r), \(item.name)")
                    }
                }
            }
        }
    }

    func testPrecisionParsingAndFallback() {
        XCTAssertEqual(Precision("fp32"), .float32)
        XCTAssertEqual(Precision("F32"), .float32)
        XCTAssertEqual(Precision("bfloat16"), .bfloat16)
        XCTAssertEqual(Precision("bf16"), .bfloat16)
        XCTAssertEqual(Precision("int8"), .int8)
        XCTAssertNil(Precision("int4"))
        let bare = CPUFeatures(avx512VNNI: false, avx512BF16: false)
        XCTAssertEqual(Precision.int8.resolved(on: bare).precision, .float32)
        XCTAssertNotNil(Precision.int8.resolved(on: bare).fallback)
        XCTAssertEqual(Precision.bfloat16.resolved(on: bare).precision, .float32)
        XCTAssertNil(Precision.float32.resolved(on: bare).fallback)
        let vnniOnly = CPUFeatures(avx512VNNI: true, avx512BF16: false)
        XCTAssertEqual(Precision.int8.resolved(on: vnniOnly).precision, .int8)
        XCTAssertEqual(Precision.bfloat16.resolved(on: vnniOnly).precision, .float32)
        // AVX2 alone runs int8 (the vpmaddwd kernel), its up-projection in float32, not bf16.
        let avx2 = CPUFeatures(avx512VNNI: false, avx512BF16: false, avx2: true)
        XCTAssertEqual(Precision.int8.resolved(on: avx2).precision, .int8)
        XCTAssertNil(Precision.int8.resolved(on: avx2).fallback)
        XCTAssertEqual(Precision.bfloat16.resolved(on: avx2).precision, .float32)
        // The up-projection runs int16 wherever int8 runs (vpdpwssd or vpmaddwd), float32 else.
        XCTAssertEqual(Precision.int8.feedForwardUp(inFeatures: 1024, on: avx2), .int16)
        XCTAssertEqual(Precision.int8.feedForwardUp(inFeatures: 1024, on: CPUFeatures(avx512VNNI: true, avx512BF16: true)), .int16)
        XCTAssertEqual(Precision.int8.feedForwardUp(inFeatures: 1024, on: CPUFeatures(avx512VNNI: true, avx512BF16: true, avx2: true, avx512FP16: true)),
                       .int16)
        XCTAssertEqual(Precision.int8.feedForwardUp(inFeatures: 1024, on: bare), .float32)
        // Too wide for exact int32 sums in int16: float32.
        XCTAssertEqual(Precision.int8.feedForwardUp(inFeatures: PackedMatrix.int16MaxInFeatures + 1, on: avx2), .float32)
        XCTAssertEqual(Precision.bfloat16.feedForwardUp(inFeatures: 1024, on: bare), .bfloat16)
        XCTAssertEqual(Precision.float32.feedForwardUp(inFeatures: 1024, on: CPUFeatures(avx512VNNI: true, avx512BF16: true, avx512FP16: true)), .float32)
    }

    // MARK: - Helpers

    func int8GEMM(_ x: [Float], _ w: [Float], _ b: [Float], m: Int, n: Int, k: Int, asymmetric: Int32,
                  split: Bool, portable: Bool = false) -> [Float] {
        let packed = m3_i8_pack(w, n, k)!
        defer { m3_i8_free(packed) }
        let ldq = m3_i8_row_stride(k)
        var q = [UInt8](repeating: 0xAA, count: m * ldq), scale = [Float](repeating: 0, count: m)
        var zero = [Int32](repeating: 0, count: m), y = [Float](repeating: .nan, count: m * n)
        m3_i8_quantize_rows(x, m, k, k, &q, ldq, &scale, &zero, asymmetric)
        let panels = m3_i8_panels(packed)
        let gemm = portable ? m3_i8_gemm_reference : m3_i8_gemm
        for (p0, p1) in split ? [(0, panels / 2), (panels / 2, panels)] : [(0, panels)] {
            gemm(packed, q, ldq, scale, zero, m, b, &y, n, p0, p1)
        }
        return y
    }

    func bf16GEMM(_ x: [Float], _ w: [Float], _ b: [Float], m: Int, n: Int, k: Int, split: Bool,
                  portable: Bool = false) -> [Float] {
        let packed = m3_bf16_pack(w, n, k)!
        defer { m3_bf16_free(packed) }
        let ldx = m3_bf16_row_stride(k)
        var xb = [UInt16](repeating: 0xAAAA, count: m * ldx), y = [Float](repeating: .nan, count: m * n)
        m3_bf16_convert_rows(x, m, k, k, &xb, ldx)
        let panels = m3_bf16_panels(packed)
        let gemm = portable ? m3_bf16_gemm_reference : m3_bf16_gemm
        for (p0, p1) in split ? [(0, panels / 2), (panels / 2, panels)] : [(0, panels)] {
            gemm(packed, xb, ldx, m, b, &y, n, p0, p1)
        }
        return y
    }

    func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
        return ab / (aa * bb).squareRoot()
    }
}
