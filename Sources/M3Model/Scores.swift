import CM3Kernels
import COpenBLAS

/// The relevance scores of BGE-M3, computed exactly as FlagEmbedding does.
public enum Scores {
    /// Dense: dot product of the (normalised) dense vectors.
    public static func dense(_ q: [Float], _ p: [Float]) -> Float {
        precondition(q.count == p.count, "dense vectors differ in size")
        return q.withUnsafeBufferPointer { a in p.withUnsafeBufferPointer { b in m3_dot(a.baseAddress, b.baseAddress, a.count) } }
    }

    /// Lexical matching: Σ over token ids present in both of w_q · w_p.
    public static func sparse(_ q: SparseVector, _ p: SparseVector) -> Float {
        var i = 0, j = 0, sum: Float = 0
        while i < q.ids.count && j < p.ids.count {
            let a = q.ids[i], b = p.ids[j]
            if a == b { sum += q.weights[i] * p.weights[j]; i += 1; j += 1 }
            else if a < b { i += 1 } else { j += 1 }
        }
        return sum
    }

    /// ColBERT late interaction: mean over query vectors of the max dot product over
    /// passage vectors (FlagEmbedding's per-text `colbert_score`, without padding).
    public static func colbert(_ q: MultiVector, _ p: MultiVector) -> Float {
        precondition(q.dimension == p.dimension, "ColBERT vectors differ in size")
        let nq = q.count, np = p.count, d = q.dimension
        guard nq > 0, np > 0 else { return 0 }
        var sims = [Float](repeating: 0, count: nq * np)  // (nq, np) = q · pᵀ
        q.values.withUnsafeBufferPointer { qv in
            p.values.withUnsafeBufferPointer { pv in
                sims.withUnsafeMutableBufferPointer { s in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(np), Int32(d),
                                1, qv.baseAddress, Int32(d), pv.baseAddress, Int32(d), 0, s.baseAddress, Int32(np))
                }
            }
        }
        var total: Float = 0
        for i in 0..<nq {
            var best = -Float.infinity
            for j in 0..<np { best = max(best, sims[i * np + j]) }
            total += best
        }
        return total / Float(nq)
    }

    /// FlagEmbedding's weighted fusion: Σ wᵢ·sᵢ / Σ wᵢ over the modes given.
    public static func fused(_ scores: [Float], weights: [Float]) -> Float {
        precondition(scores.count == weights.count, "one weight per score")
        // Weights are relative: scaled so the largest is 1 first, so that weights near
        // Float's edges (1e-45, 3e38) neither underflow the products nor overflow the sum.
        let largest = weights.max() ?? 0
        guard largest.isFinite, largest > 0 else { return 0 }
        var num: Float = 0, den: Float = 0
        for (s, w) in zip(scores, weights) { let w = w / largest; num += s * w; den += w }
        return den > 0 ? num / den : 0
    }
}

/// Fusion weights for (dense, sparse, ColBERT). Default 0.4 / 0.3 / 0.3.
public struct FusionWeights: Sendable, Equatable, CustomStringConvertible {
    public var dense: Float
    public var sparse: Float
    public var colbert: Float

    public init(dense: Float = 0.4, sparse: Float = 0.3, colbert: Float = 0.3) {
        self.dense = dense
        self.sparse = sparse
        self.colbert = colbert
    }

    /// Parses "0.4,0.3,0.3": three finite, non-negative numbers, not all zero.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 3 else {
            throw ModelError.invalidInput("weights must be three comma-separated numbers for dense,sparse,colbert (e.g. 0.4,0.3,0.3), got \"\(text)\"")
        }
        var values: [Float] = []
        for part in parts {
            guard let v = Float(part), v.isFinite, v >= 0 else {
                throw ModelError.invalidInput("weight \"\(part)\" in \"\(text)\" is not a finite non-negative number")
            }
            values.append(v)
        }
        guard values.contains(where: { $0 > 0 }) else {
            throw ModelError.invalidInput("weights \"\(text)\" are all zero; at least one mode needs a positive weight")
        }
        self.init(dense: values[0], sparse: values[1], colbert: values[2])
    }

    public var description: String { "\(dense),\(sparse),\(colbert)" }

    /// The same weights divided by the largest, so the largest is 1. Fusion uses these:
    /// weights are relative, and at Float's edges the raw ones fail (`1e-45,0,0` made every
    /// product underflow to a denormal and every fused score 1.0; `3e38` three times
    /// overflowed the sum to infinity and every score to 0). Rescaled weights give the
    /// ranking of any positive multiple. Non-finite or non-positive largest weights (which
    /// `init(parsing:)` and search validation refuse) give zeros.
    public var scaledToUnitMaximum: FusionWeights {
        let largest = Swift.max(dense, sparse, colbert)
        guard largest.isFinite, largest > 0 else { return FusionWeights(dense: 0, sparse: 0, colbert: 0) }
        return FusionWeights(dense: dense / largest, sparse: sparse / largest, colbert: colbert / largest)
    }
}

import Foundation
