// Linear-layer weights packed once at load for the int8 / bfloat16 kernels (CM3LowPrecision.h),
// and the matmul that runs them on all cores.
import CM3Kernels
import Foundation

/// W (out, in) packed for one reduced-precision kernel. Owns the C allocation.
/// (`package` for m3bench gemm, which times it against sgemm.)
package final class PackedMatrix: @unchecked Sendable {  // immutable after init
    /// Version of what packing produces: which matrices are packed, in which arithmetic, and
    /// how (quantization, rounding, layout, anything folded into the weights). Part of the key
    /// of the packed-weights cache (`PackedWeightsCache`), so a change that makes different
    /// bytes must bump it and old caches are never read.
    /// 2: the int8 mode's feed-forward up-projection may be packed two-part int8 (W_hi, W_lo)
    /// instead of bf16 (`Precision.feedForwardUp`).
    /// 3: it is packed int16 wherever int8 runs.
    package static let packingSchemeVersion = 3

    private enum Storage {
        case int8(OpaquePointer)      // m3_i8_weights
        case bfloat16(OpaquePointer)  // m3_bf16_weights
        case int16(OpaquePointer)     // m3_i16_weights
    }
    private let storage: Storage
    package let outFeatures: Int
    package let inFeatures: Int
    /// What keeps borrowed arrays alive (the mapped cache file); nil when the C side owns them.
    private let owner: AnyObject?

    /// Packs W (out, in); nil for float32 (sgemm reads the tensor as is).
    convenience init?(_ w: Tensor, arithmetic: LinearArithmetic) {
        self.init(w.pointer, out: w.shape[0], in: w.shape[1], arithmetic: arithmetic)
        withExtendedLifetime(w) {}
    }

    /// Packs W (out, in), row-major; nil for float32.
    package convenience init?(_ w: UnsafePointer<Float>, out: Int, in inner: Int, precision: Precision) {
        self.init(w, out: out, in: inner, arithmetic: LinearArithmetic(precision))
    }

    /// Packs W (out, in), row-major; nil for float32.
    package init?(_ w: UnsafePointer<Float>, out: Int, in inner: Int, arithmetic: LinearArithmetic) {
        switch arithmetic {
        case .float32:
            return nil
        case .int8:
            guard let p = m3_i8_pack(w, out, inner) else { fatalError("out of memory packing int8 weights") }
            storage = .int8(p)
        case .bfloat16:
            guard let p = m3_bf16_pack(w, out, inner) else { fatalError("out of memory packing bf16 weights") }
            storage = .bfloat16(p)
        case .int16:
            // Fails only out of memory: the encoder picks int16 for k ≤ `int16MaxInFeatures`.
            guard let p = m3_i16_pack(w, out, inner) else { fatalError("out of memory packing int16 weights") }
            storage = .int16(p)
        }
        outFeatures = out
        inFeatures = inner
        owner = nil
    }

    /// A packing read back: W (out, in) in `arithmetic` over `sections` (the arrays of
    /// `sectionLengths`, in order, 64-byte aligned), which `owner` keeps alive. nil when they
    /// do not fit the layout.
    init?(arithmetic: LinearArithmetic, out: Int, in inner: Int, sections: [UnsafeRawBufferPointer], owner: AnyObject) {
        guard let lengths = Self.sectionLengths(arithmetic, out: out, in: inner), sections.count == lengths.count,
              zip(sections, lengths).allSatisfy({ $0.count == $1 && $0.baseAddress != nil }) else { return nil }
        func int8View(_ first: Int) -> OpaquePointer? {
            m3_i8_view(out, inner, sections[first].baseAddress, sections[first + 1].baseAddress, sections[first + 2].baseAddress)
        }
        switch arithmetic {
        case .float32:
            return nil
        case .int8:
            guard let p = int8View(0) else { return nil }
            storage = .int8(p)
        case .int16:
            guard let p = m3_i16_view(out, inner, sections[0].baseAddress, sections[1].baseAddress) else { return nil }
            storage = .int16(p)
        case .bfloat16:
            guard let p = m3_bf16_view(out, inner, sections[0].baseAddress) else { return nil }
            storage = .bfloat16(p)
        }
        outFeatures = out
        inFeatures = inner
        self.owner = owner
    }

    /// Byte lengths of the arrays a packing of W (out, in) consists of (int8: panels, scales,
    /// column sums; int16: panels, scales; bf16: panels); nil for float32
    /// or when they overflow.
    static func sectionLengths(_ arithmetic: LinearArithmetic, out: Int, in inner: Int) -> [Int]? {
        guard out >= 0, inner >= 0 else { return nil }
        var a = 0, b = 0, c = 0
        switch arithmetic {
        case .float32:
            return nil
        case .int8:
            guard m3_i8_layout(out, inner, &a, &b, &c) != 0 else { return nil }
            return [a, b, c]
        case .int16:
            guard m3_i16_layout(out, inner, &a, &b) != 0 else { return nil }
            return [a, b]
        case .bfloat16:
            guard m3_bf16_layout(out, inner, &a) != 0 else { return nil }
            return [a]
        }
    }

    /// The arrays of this packing (see `sectionLengths`), valid while `self` lives.
    var sections: [UnsafeRawBufferPointer] {
        let lengths = Self.sectionLengths(arithmetic, out: outFeatures, in: inFeatures) ?? []
        func int8Parts(_ p: OpaquePointer) -> [UnsafeRawPointer?] {
            var a: UnsafeRawPointer?, b: UnsafeRawPointer?, c: UnsafeRawPointer?
            m3_i8_parts(p, &a, &b, &c)
            return [a, b, c]
        }
        let pointers: [UnsafeRawPointer?]
        switch storage {
        case .int8(let p):
            pointers = int8Parts(p)
        case .int16(let p):
            var a: UnsafeRawPointer?, b: UnsafeRawPointer?
            m3_i16_parts(p, &a, &b)
            pointers = [a, b]
        case .bfloat16(let p):
            pointers = [m3_bf16_data(p)]
        }
        return zip(pointers, lengths).map { UnsafeRawBufferPointer(start: $0, count: $1) }
    }

    deinit {
        switch storage {
        case .int8(let p): m3_i8_free(p)
        case .bfloat16(let p): m3_bf16_free(p)
        case .int16(let p): m3_i16_free(p)
        }
    }

    /// Column panels of 64 outputs: the unit split between cores.
    private var panels: Int {
        switch storage {
        case .int8(let p): m3_i8_panels(p)
        case .int16(let p): m3_i16_panels(p)
        case .bfloat16(let p): m3_bf16_panels(p)
        }
    }

    /// Bytes of the x (rows, in) conversion `multiply` needs in `scratch` (the largest of
    /// the schemes).
    static func scratchBytes(rows: Int, inFeatures k: Int) -> Int {
        rows * max(m3_i8_row_stride(k) + 8, 2 * m3_bf16_row_stride(k), 2 * m3_i16_row_stride(k) + 4) + 64
    }

    /// The widest input int16 packs (exact int32 sums need m3_i16_activation_limit(k) ≥ 1;
    /// at this k it is 15, still finer than int8's steps). Wider layers stay in float32.
    package static let int16MaxInFeatures = 65536

    /// y (rows, out) = x (rows, in) · Wᵀ + bias (out, or nil). x is converted once (rows
    /// split across cores), then each core computes a contiguous range of column panels.
    /// `scratch` holds at least `scratchBytes(rows:inFeatures:)` bytes.
    package func multiply(_ x: UnsafePointer<Float>, rows: Int, bias: UnsafePointer<Float>?,
                  into y: UnsafeMutablePointer<Float>, scratch: UnsafeMutableRawPointer) {
        let panels = self.panels
        // Below ~2 M multiply-adds the hand-off to a second core costs more than it saves.
        let workers = rows * outFeatures * inFeatures >= 1 << 21 ? min(ProcessInfo.processInfo.activeProcessorCount, panels) : 1
        convert(x, rows: rows, into: scratch)
        splitRange(panels, workers: workers) { p0, p1 in
            multiplyConverted(rows: rows, scratch: scratch, bias: bias, into: y, panels: p0 ..< p1)
        }
    }

    /// Column panels of 64 outputs (the last one possibly partial): the unit of work split.
    package var panelCount: Int { panels }

    /// Matrices of one arithmetic and inFeatures share a conversion of x.
    package var arithmetic: LinearArithmetic {
        switch storage {
        case .int8: .int8
        case .bfloat16: .bfloat16
        case .int16: .int16
        }
    }

    /// Converts x (rows, in) into `scratch` for `multiplyConverted`: per-row uint8 with scale
    /// and zero point (int8), or bfloat16. Rows are split across cores when large. Matrices of
    /// the same precision and inFeatures read the same conversion.
    package func convert(_ x: UnsafePointer<Float>, rows: Int, into scratch: UnsafeMutableRawPointer) {
        let k = inFeatures
        switch storage {
        case .int8:
            let (q, ldq, scale, zero) = Self.int8Layout(scratch, rows: rows, inFeatures: k)
            splitRows(rows, cols: k) { r0, count in
                // Asymmetric (zero point) per row: GELU outputs span about [-0.17, max]. On the
                // full random model it kept more accuracy than symmetric ±max (dense cosine
                // vs float32 0.9986 against 0.9982).
                m3_i8_quantize_rows(x + r0 * k, count, k, k, q + r0 * ldq, ldq, scale + r0, zero + r0, 1)
            }
        case .int16:
            let (q, ldq, scale) = Self.int16Layout(scratch, rows: rows, inFeatures: k)
            splitRows(rows, cols: k) { r0, count in
                m3_i16_quantize_rows(x + r0 * k, count, k, k, q + r0 * ldq, ldq, scale + r0)
            }
        case .bfloat16:
            let ldb = m3_bf16_row_stride(k)
            let xb = scratch.assumingMemoryBound(to: UInt16.self)
            splitRows(rows, cols: k) { r0, count in
                m3_bf16_convert_rows(x + r0 * k, count, k, k, xb + r0 * ldb, ldb)
            }
        }
    }

    /// y[:, columns of `panels`] = converted x · Wᵀ + bias, on the calling thread. Disjoint
    /// panel ranges may run concurrently on one conversion.
    package func multiplyConverted(rows: Int, scratch: UnsafeRawPointer, bias: UnsafePointer<Float>?,
                                   into y: UnsafeMutablePointer<Float>, panels: Range<Int>) {
        let k = inFeatures, n = outFeatures
        switch storage {
        case .int8(let w):
            let (q, ldq, scale, zero) = Self.int8Layout(UnsafeMutableRawPointer(mutating: scratch), rows: rows, inFeatures: k)
            m3_i8_gemm(w, q, ldq, scale, zero, rows, bias, y, n, panels.lowerBound, panels.upperBound)
        case .int16(let w):
            let (q, ldq, scale) = Self.int16Layout(UnsafeMutableRawPointer(mutating: scratch), rows: rows, inFeatures: k)
            m3_i16_gemm(w, q, ldq, scale, rows, bias, y, n, panels.lowerBound, panels.upperBound)
        case .bfloat16(let w):
            let xb = scratch.assumingMemoryBound(to: UInt16.self)
            m3_bf16_gemm(w, xb, m3_bf16_row_stride(k), rows, bias, y, n, panels.lowerBound, panels.upperBound)
        }
    }

    /// Where the int8 conversion keeps its parts in the scratch: q (rows, ldq), then the
    /// per-row scales and zero points.
    private static func int8Layout(_ scratch: UnsafeMutableRawPointer, rows: Int, inFeatures k: Int)
        -> (q: UnsafeMutablePointer<UInt8>, ldq: Int, scale: UnsafeMutablePointer<Float>, zero: UnsafeMutablePointer<Int32>) {
        let ldq = m3_i8_row_stride(k)
        let scaleRaw = scratch + rows * ldq, zeroRaw = scaleRaw + rows * 4
        return (scratch.assumingMemoryBound(to: UInt8.self), ldq,
                scaleRaw.assumingMemoryBound(to: Float.self), zeroRaw.assumingMemoryBound(to: Int32.self))
    }

    /// Where the int16 conversion keeps its parts in the scratch: q (rows, ldq int16), then
    /// the per-row scales.
    private static func int16Layout(_ scratch: UnsafeMutableRawPointer, rows: Int, inFeatures k: Int)
        -> (q: UnsafeMutablePointer<Int16>, ldq: Int, scale: UnsafeMutablePointer<Float>) {
        let ldq = m3_i16_row_stride(k)
        return (scratch.assumingMemoryBound(to: Int16.self), ldq, (scratch + rows * ldq * 2).assumingMemoryBound(to: Float.self))
    }

    /// Row-wise conversion, on all cores when large enough (the gemm that follows is ~n× more work).
    private func splitRows(_ rows: Int, cols: Int, _ body: (Int, Int) -> Void) {
        // A batch of 4+ queries (64+ rows × 1024) is worth two cores; one query (16 rows) is not.
        let workers = rows * cols >= 1 << 16 ? min(ProcessInfo.processInfo.activeProcessorCount, rows) : 1
        let per = (rows + workers - 1) / max(workers, 1)
        splitRange(workers, workers: workers) { i, _ in
            let r0 = i * per
            if r0 < rows { body(r0, min(per, rows - r0)) }
        }
    }
}

/// Splits 0 ..< count into `workers` contiguous ranges run concurrently; body(begin, end).
/// (With workers == count each range is one index: body(i, i + 1).)
private func splitRange(_ count: Int, workers: Int, _ body: (Int, Int) -> Void) {
    if workers <= 1 { body(0, count); return }
    // Ranges are disjoint.
    parallelFor(workers) { i in body(count * i / workers, count * (i + 1) / workers) }
}

/// The buffer `PackedMatrix.multiply` converts x into, sized once per forward call for its
/// largest layer and reused by every layer.
package final class ConversionScratch {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int

    package init(rows: Int, inFeatures: Int) {
        capacity = PackedMatrix.scratchBytes(rows: rows, inFeatures: inFeatures)
        base = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { base.deallocate() }

    /// The buffer, checked to be large enough for x (rows, inFeatures).
    package func bytes(rows: Int, inFeatures: Int) -> UnsafeMutableRawPointer {
        precondition(PackedMatrix.scratchBytes(rows: rows, inFeatures: inFeatures) <= capacity, "conversion scratch too small")
        return base
    }
}
