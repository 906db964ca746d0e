import CM3Kernels

/// The similarity kernels of the indexes, for callers outside the graph code (the ColBERT
/// store scores float queries against float16 vectors with `dot(_:float16Bits:)`).
///
/// Each call runs the fastest version this CPU has (AVX-512, AVX2+FMA or portable C).
///
///     let s = Similarity.dot(queryVector, documentVector)   // both 1024 floats
public enum Similarity {
    /// Σ a[i]·b[i]. Precondition: equal lengths.
    public static func dot(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Float {
        precondition(a.count == b.count, "dot of vectors with different lengths")
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return 0 }
        return m3ix_dot_f32(pa, pb, a.count)
    }

    /// Σ a[i]·b[i]. Precondition: equal lengths.
    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in dot(pa, pb) } }
    }

    /// Σ q[i]·float(h[i]) where `h` holds IEEE binary16 bit patterns (`Float16.bitPattern`).
    public static func dot(_ q: UnsafeBufferPointer<Float>, float16Bits h: UnsafeBufferPointer<UInt16>) -> Float {
        precondition(q.count == h.count, "dot of vectors with different lengths")
        guard let pq = q.baseAddress, let ph = h.baseAddress else { return 0 }
        return m3ix_dot_f32_f16(pq, ph, q.count)
    }

    /// Σ q[i]·float(h[i]) where `h` holds IEEE binary16 bit patterns.
    public static func dot(_ q: [Float], float16Bits h: [UInt16]) -> Float {
        q.withUnsafeBufferPointer { pq in h.withUnsafeBufferPointer { ph in dot(pq, float16Bits: ph) } }
    }

    /// ColBERT late interaction (MaxSim): (1/nq) Σ_i max_j q_i·p_j over `queryRows` float
    /// query rows and float16 passage rows (IEEE binary16 bit patterns, as the index stores
    /// them), both row-major with `dimension` values per row; 0 when either has no rows.
    /// Scores without converting the passage to float32 first. Precondition: whole rows.
    ///
    ///     let s = Similarity.maxSim(query: q, dimension: 1024, float16Bits: rows)  // q: 16×1024, rows: 256×1024
    public static func maxSim(query q: UnsafeBufferPointer<Float>, dimension d: Int,
                              float16Bits p: UnsafeBufferPointer<UInt16>) -> Float {
        precondition(d > 0 && q.count % d == 0 && p.count % d == 0, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pp = p.baseAddress else { return 0 }
        return m3ix_maxsim_f16(pq, q.count / d, pp, p.count / d, d)
    }

    /// MaxSim over float32 passage rows (see `maxSim(query:dimension:float16Bits:)`).
    public static func maxSim(query q: UnsafeBufferPointer<Float>, dimension d: Int,
                              passage p: UnsafeBufferPointer<Float>) -> Float {
        precondition(d > 0 && q.count % d == 0 && p.count % d == 0, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pp = p.baseAddress else { return 0 }
        return m3ix_maxsim_f32(pq, q.count / d, pp, p.count / d, d)
    }

    /// Which kernels run: "avx512", "avx2" or "portable".
    public static var instructionSet: String {
        switch Int(m3ix_isa_level()) {
        case M3IX_ISA_AVX512: return "avx512"
        case M3IX_ISA_AVX2: return "avx2"
        default: return "portable"
        }
    }
}

/// The similarity an HNSW graph ranks by (higher = more similar). `code` is persisted in the
/// HNSW header so a file built with one metric is not read with another; the score functions
/// themselves are the encoding's (`VectorRows`), so the graph code never knows the metric.
struct Metric: Sendable {
    let code: UInt8
    let name: String

    /// Inner product; on unit vectors this is cosine similarity.
    static let innerProduct = Metric(code: 1, name: "inner product")

    static func from(code: UInt8) -> Metric? {
        code == innerProduct.code ? innerProduct : nil
    }
}
