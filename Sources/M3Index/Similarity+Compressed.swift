import CM3Kernels

/// MaxSim against compressed ColBERT rows, scored in their stored form (the query stays
/// float32; see CM3CompressedKernels.h for the layouts). Each call runs the fastest kernel
/// this CPU has (AVX-512 or portable C).
extension Similarity {
    /// (1/nq) Σ_i max_j scales[j]·(q_i · codes_j) over int8 rows (`scales.count` rows of
    /// `dimension` signed bytes). 0 when either side has no rows.
    public static func maxSim(query q: UnsafeBufferPointer<Float>, dimension d: Int,
                              int8Rows codes: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer) -> Float {
        let np = scales.count / 4
        precondition(d > 0 && q.count % d == 0 && codes.count == np * d, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pc = codes.baseAddress, let ps = scales.baseAddress, np > 0 else { return 0 }
        return m3cx_maxsim_i8(pq, q.count / d, pc.assumingMemoryBound(to: Int8.self),
                              ps.assumingMemoryBound(to: Float.self), np, d)
    }

    /// (1/nq) Σ_i max_j factors[j]·(q_i · s_j) where s_j ∈ {−1, +1}^d is row j's sign bits
    /// (`dimension / 8` bytes per row, bit k of byte k/8 set for +1). Precondition: d % 8 == 0.
    public static func maxSim(query q: UnsafeBufferPointer<Float>, dimension d: Int,
                              signBits bits: UnsafeRawBufferPointer, factors: UnsafeRawBufferPointer) -> Float {
        let np = factors.count / 4
        precondition(d > 0 && d % 8 == 0 && q.count % d == 0 && bits.count == np * d / 8, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pb = bits.baseAddress, let pf = factors.baseAddress, np > 0 else { return 0 }
        return m3cx_maxsim_bits(pq, q.count / d, pb.assumingMemoryBound(to: UInt8.self),
                                pf.assumingMemoryBound(to: Float.self), np, d)
    }

    /// MaxSim of query rows against rows of `codebook.subspaces` one-byte codes, decoded a
    /// block at a time (no lookup table): faster than the table when a code stands for 2 or
    /// 4 values (`ProductQuantizer.scoresThroughTable`). Query and centroids are rounded to
    /// bfloat16 and multiplied exactly (AVX512-BF16 where the CPU has it: twice the
    /// multiply-adds an instruction of float32; float32 on the same values elsewhere). The
    /// rounding moves a score by ~1e-3, far less than the quantisation itself; `queryBF16`
    /// is `bfloat16(query)`, computed once per query.
    public static func maxSim(queryBF16 q: UnsafeBufferPointer<UInt16>, codebook: ProductQuantizer,
                              codes: UnsafeRawBufferPointer) -> Float {
        let d = codebook.dimension, m = codebook.subspaces
        precondition(q.count % d == 0 && codes.count % m == 0, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pc = codes.baseAddress, q.count > 0, codes.count > 0 else { return 0 }
        return codebook.centroidsBF16.withUnsafeBufferPointer { c in
            m3cx_maxsim_pq_rows_bf16(pq, q.count / d, d, c.baseAddress, m, pc.assumingMemoryBound(to: UInt8.self), codes.count / m)
        }
    }

    /// `values` rounded to bfloat16 (nearest, ties to even; beyond its range, its largest).
    public static func bfloat16(_ values: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBufferPointer { m3cx_round_bf16(v.baseAddress, v.count, $0.baseAddress) } }
        return out
    }

    /// MaxSim of float32 query rows against PQ codes decoded into float32, the reference the
    /// bfloat16 path is measured against.
    public static func maxSim(query q: UnsafeBufferPointer<Float>, codebook: ProductQuantizer,
                              codes: UnsafeRawBufferPointer) -> Float {
        let d = codebook.dimension, m = codebook.subspaces
        precondition(q.count % d == 0 && codes.count % m == 0, "MaxSim of partial rows")
        guard let pq = q.baseAddress, let pc = codes.baseAddress, q.count > 0, codes.count > 0 else { return 0 }
        return codebook.centroids.withUnsafeBufferPointer { c in
            m3cx_maxsim_pq_rows(pq, q.count / d, d, c.baseAddress, m, pc.assumingMemoryBound(to: UInt8.self), codes.count / m)
        }
    }

    /// MaxSim of `queryRows` rows from a product quantiser's lookup table
    /// (`ProductQuantizer.lookupTable`) against rows of `subspaces` one-byte codes.
    public static func maxSim(table: UnsafeBufferPointer<Float>, queryRows nq: Int, subspaces m: Int,
                              codes: UnsafeRawBufferPointer) -> Float {
        precondition(m > 0 && codes.count % m == 0 && table.count == m3cx_pq_table_count(nq, m), "MaxSim of partial rows")
        guard let pt = table.baseAddress, let pc = codes.baseAddress, codes.count > 0 else { return 0 }
        return m3cx_maxsim_pq(pt, nq, m, pc.assumingMemoryBound(to: UInt8.self), codes.count / m)
    }
}
