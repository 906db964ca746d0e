import M3Model

/// A candidate chunk with its exact per-mode scores.
struct ScoredChunk {
    var chunkID: Int64
    var documentID: Int64 = 0
    var ordinal = 0
    var charStart = 0
    var charEnd = 0
    var text = ""
    /// Where the chunk sits in its source (page, section): filled with the text.
    var metadata: [String: String]?
    var dense: Float?
    var sparse: Float?
    var colbert: Float?
    var fused: Float = 0
}

/// The last stage of a search: the exact per-mode scores become one fused score, and the
/// best chunks (or documents) are kept. Pure functions, shared by search and evaluation.
enum Fusion {
    /// Weighted: Σ wᵢ·sᵢ / Σ wᵢ (FlagEmbedding). RRF: Σ wᵢ / (60 + rankᵢ) with Σ wᵢ = 1, ranks within the candidates.
    /// The weights are rescaled so the largest is 1 (`FusionWeights.scaledToUnitMaximum`):
    /// only their ratios matter, and raw weights at Float's edges underflow or overflow.
    static func fuse(_ chunks: inout [ScoredChunk], weights raw: FusionWeights, fusion: SearchOptions.Fusion = .weighted) {
        let w = raw.scaledToUnitMaximum
        switch fusion {
        case .weighted:
            // Scores.fused's arithmetic, in its order, without two arrays per chunk
            // (a tuning grid fuses every candidate once per grid point).
            for i in chunks.indices {
                var num: Float = 0, den: Float = 0
                if w.dense > 0 { num += (chunks[i].dense ?? 0) * w.dense; den += w.dense }
                if w.sparse > 0 { num += (chunks[i].sparse ?? 0) * w.sparse; den += w.sparse }
                if w.colbert > 0 { num += (chunks[i].colbert ?? 0) * w.colbert; den += w.colbert }
                chunks[i].fused = den > 0 ? num / den : 0
            }
        case .rrf:
            // Relative like the weighted sum's: divided by their sum too, so a fused score
            // stays within (0, 1/61] whatever multiple of the weights was given.
            let total = w.dense + w.sparse + w.colbert
            let w = total > 0 ? FusionWeights(dense: w.dense / total, sparse: w.sparse / total, colbert: w.colbert / total) : w
            for i in chunks.indices { chunks[i].fused = 0 }
            let modes: [(Float, KeyPath<ScoredChunk, Float?>)] = [(w.dense, \.dense), (w.sparse, \.sparse), (w.colbert, \.colbert)]
            for (weight, key) in modes where weight > 0 {
                let order = chunks.indices.sorted {
                    let a = chunks[$0][keyPath: key] ?? -.infinity, b = chunks[$1][keyPath: key] ?? -.infinity
                    return a != b ? a > b : chunks[$0].chunkID < chunks[$1].chunkID
                }
                for (rank, i) in order.enumerated() { chunks[i].fused += weight / Float(60 + rank + 1) }
            }
        }
    }

    /// The k best fused chunks (ties: lower chunk id first), at most one per document when grouping.
    static func top(_ scored: [ScoredChunk], k: Int, groupByDocument: Bool) -> [ScoredChunk] {
        let sorted = scored.sorted { $0.fused != $1.fused ? $0.fused > $1.fused : $0.chunkID < $1.chunkID }
        var seen = Set<Int64>()
        var kept: [ScoredChunk] = []
        for c in sorted {
            if groupByDocument && !seen.insert(c.documentID).inserted { continue }
            kept.append(c)
            if kept.count == k { break }
        }
        return kept
    }
}
