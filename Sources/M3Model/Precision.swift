import CM3Kernels

/// The arithmetic of the encoder's linear layers (q, k, v, attention output, feed-forward,
/// ColBERT head). Embeddings, LayerNorm, attention and the sparse head always run in float32.
///
/// ```swift
/// let model = try BGEM3(folder: path, precision: Precision("int8")!)
/// if let why = model.precisionFallback { print(why) }   // CPU without AVX512-VNNI
/// ```
public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// float32 sgemm (OpenBLAS): the reference.
    case float32
    /// Weights and activations rounded to bfloat16, float32 sums (AVX512-BF16).
    case bfloat16
    /// Per-channel int8 weights, per-token dynamic uint8 activations, exact int32 sums
    /// (AVX512-VNNI, else AVX2 with the same results); the feed-forward up-projection runs
    /// in int16 (see `feedForwardUp(on:)`).
    case int8

    /// Parses "f32" / "fp32" / "float32", "bf16" / "bfloat16", "int8" (case-insensitive).
    public init?(_ text: String) {
        switch text.lowercased() {
        case "f32", "fp32", "float32": self = .float32
        case "bf16", "bfloat16": self = .bfloat16
        case "int8", "i8": self = .int8
        default: return nil
        }
    }

    /// The short name the CLI prints: f32, bf16, int8.
    public var description: String {
        switch self {
        case .float32: "f32"
        case .bfloat16: "bf16"
        case .int8: "int8"
        }
    }

    /// The arithmetic of the feed-forward up-projection (intermediate.dense) in int8 mode. On
    /// the full-size model plain int8 there caused half of int8's error (dense cosine vs
    /// float32: 0.9986 all int8, 0.9993 with that layer in bf16), for a third of the linear
    /// work, and no data-free rescaling recovers it (its inputs and weights are Gaussian-like:
    /// 8 bits is the noise floor). So it runs in int16 (11–12 bits a side, exact int32 sums):
    /// vpdpwssd does half vpdpbusd's multiply-adds at the same instruction rate, so it costs
    /// two int8 products, against three for the two-part int8 it replaced and one bf16 pass
    /// (5–6× slower than vpdpbusd on Intel, BENCHMARKS.md); AVX2's vpmaddwd runs it at the
    /// int8 kernel's rate there. Float32 without either.
    /// (`inFeatures`: the layer's input width; wider than int16's exact sums allow stays float32.)
    func feedForwardUp(inFeatures: Int, on cpu: CPUFeatures = .current) -> LinearArithmetic {
        guard self == .int8 else { return LinearArithmetic(self) }
        return (cpu.avx512VNNI || cpu.avx2) && inFeatures <= PackedMatrix.int16MaxInFeatures ? .int16 : .float32
    }

    /// The precision this CPU runs when `self` is asked for: `self`, or float32 with the reason.
    package func resolved(on cpu: CPUFeatures = .current) -> (precision: Precision, fallback: String?) {
        switch self {
        case .float32:
            return (.float32, nil)
        case .bfloat16 where !cpu.avx512BF16:
            return (.float32, "bf16 needs AVX512-BF16, which this CPU lacks; running float32")
        case .int8 where !cpu.avx512VNNI && !cpu.avx2:
            return (.float32, "int8 needs AVX512-VNNI or AVX2, which this CPU lacks; running float32")
        default:
            return (self, nil)
        }
    }
}

/// How one linear layer multiplies: a `Precision`'s arithmetic, or int16 (per-token and
/// per-channel int16, exact int32 sums: the int8 mode's feed-forward up-projection;
/// CM3LowPrecision.h).
package enum LinearArithmetic: Sendable, Equatable {
    case float32, bfloat16, int8, int16

    package init(_ precision: Precision) {
        switch precision {
        case .float32: self = .float32
        case .bfloat16: self = .bfloat16
        case .int8: self = .int8
        }
    }
}

/// The CPU features the reduced-precision kernels need (checked at run time: the package
/// compiles for baseline x86-64).
package struct CPUFeatures: Sendable {
    package var avx512VNNI: Bool
    package var avx512BF16: Bool
    /// AVX2 + FMA: the int8 kernel without VNNI. Same results; per multiply-add about as fast
    /// as float32 there (vpmaddwd does no more per cycle than FMA), with a quarter of the
    /// weight bytes to read and hold.
    package var avx2: Bool
    /// AVX512-FP16: not used for arithmetic; it marks the Intel cores (Sapphire Rapids and
    /// later) whose vdpbf16ps is slow next to vpdpbusd.
    package var avx512FP16: Bool

    package init(avx512VNNI: Bool, avx512BF16: Bool, avx2: Bool = false, avx512FP16: Bool = false) {
        self.avx512VNNI = avx512VNNI
        self.avx512BF16 = avx512BF16
        self.avx2 = avx2
        self.avx512FP16 = avx512FP16
    }

    package static let current = CPUFeatures(avx512VNNI: m3_cpu_has_avx512_vnni() != 0,
                                             avx512BF16: m3_cpu_has_avx512_bf16() != 0,
                                             avx2: m3_i8_gemm_is_fast() != 0,
                                             avx512FP16: m3_cpu_has_avx512_fp16() != 0)
}
