// Search with filters and exact rescoring.
//
// A filter is applied while the graph is traversed, never to a top k already cut (which
// would return fewer than k, or none, when few items match). How depends on its
// selectivity s = matching / live items:
// - high s: traverse through non-matching nodes, collect only matching ones (Qdrant's
//   filterable HNSW without extra links; the way tombstones are already handled);
// - lower s: the same, but a non-matching neighbour is not scored: its own neighbours are
//   examined instead (ACORN-1's two-hop expansion), so sparse matching nodes stay in reach
//   without paying a distance for every node in between;
// - low s: no traversal at all; every matching item is scored (on the graph's codes) and
//   the best are rescored exactly, which is exact by construction. A traversal costs about
//   V = 24·ef distances unfiltered and V/s filtered; scoring the matches costs s·N, so the
//   exhaustive branch wins below s = √(V/N) (4% at 1M items and ef 64).
import CM3Kernels

/// A slot-level filter for `searchLayer`.
struct SlotFilter {
    let allows: (UInt32) -> Bool
    /// Score only allowed nodes; reach them through rejected ones' neighbour lists.
    let twoHop: Bool
}

extension HNSWIndex {
    /// How a filtered search runs (see `filterPlan(_:k:ef:)`).
    public enum FilterPlan: Sendable, Equatable, CustomStringConvertible {
        /// Traverse the graph through every node, collecting only matching ones.
        case graph
        /// Traverse, scoring only matching nodes, reached through non-matching ones' lists.
        case graphTwoHop
        /// Score every matching item; exact.
        case exhaustive

        public var description: String {
            switch self {
            case .graph: return "graph"
            case .graphTwoHop: return "graph (two-hop)"
            case .exhaustive: return "exhaustive"
            }
        }
    }

    /// Selectivities where a traversal skips non-matching nodes (two-hop expansion). Above the
    /// band scoring them costs little; below it the matching nodes two hops apart no longer
    /// form a navigable graph (recall@10 0.988 at 3% and 0.84 at 1% on the test set, against
    /// 1.0 for the traversal through every node), so the plan scores every node it passes.
    static let twoHopBand = 0.05..<0.25

    /// The plan `search` follows for this filter, and the number of matching items it
    /// assumed (exact for a set filter up to ids the index lacks, sampled for a predicate).
    public func filterPlan(_ filter: IDFilter, k: Int, ef: Int? = nil) -> (plan: FilterPlan, estimatedMatches: Int) {
        let ef = Swift.max(ef ?? efSearch, k)
        let matches = estimatedMatches(filter)
        let live = Swift.max(liveCount, 1)
        let s = Double(matches) / Double(live)
        let traversal = 24.0 * Double(ef)
        if Double(matches) * Double(matches) <= Double(live) * traversal || matches <= 2 * ef { return (.exhaustive, matches) }
        return (Self.twoHopBand.contains(s) ? .graphTwoHop : .graph, matches)
    }

    /// Matching live items: a set's size (capped at the live count) or, for a predicate, its
    /// rate on 1,024 slots spread by the golden ratio (a fixed stride would alias with
    /// periodic ids), or on every slot of a small index.
    func estimatedMatches(_ filter: IDFilter) -> Int {
        if let n = filter.allowedCount { return Swift.min(n, liveCount) }
        guard liveCount > 0 else { return 0 }
        var seen = 0, allowed = 0
        let samples = slotCount <= 2048 ? slotCount : 1024
        var u = 0.5
        for j in 0..<samples {
            let s: Int
            if samples == slotCount {
                s = j
            } else {
                u += 0.6180339887498949
                u -= u.rounded(.down)
                s = Swift.min(slotCount - 1, Int(u * Double(slotCount)))
            }
            guard isLive(UInt32(s)) else { continue }
            seen += 1
            if filter.allows(ids[s]) { allowed += 1 }
        }
        guard seen > 0 else { return liveCount }
        return Int((Double(allowed) / Double(seen) * Double(liveCount)).rounded(.up))
    }

    /// The `k` best live items for `query`, best first (ties: lower id first), among those
    /// `filter` allows, with scores from `exactScore` when given.
    ///
    ///     let hits = try index.search(q, k: 10, filter: IDFilter(allowing: ids)) { id in
    ///         Similarity.dot(q, exactVectors[id]!)      // the caller's exact vectors
    ///     }
    ///
    /// - `ef` (default `efSearch`, raised to k) sizes the candidate list of a traversal.
    /// - `filter` is applied during candidate generation (see `filterPlan`); a filtered query
    ///   returns what an exhaustive ranking of the matching items returns (exactly, when few
    ///   match and the exhaustive plan runs).
    /// - `exactScore(id)` gives the exact similarity of a live id. A traversal rescores its
    ///   `ef` candidates with it; the exhaustive plan rescores, best bound first, until no
    ///   unscored item can reach the top k, so it is exact. Without it, int8 graphs return
    ///   their approximate scores.
    ///
    /// Returns fewer than k only when fewer matching items exist. Throws `.dimensionMismatch`
    /// or `.nonFiniteValue`.
    public func search(_ query: [Float], k: Int, ef: Int? = nil, filter: IDFilter? = nil,
                       exactScore: ((Int64) -> Float)? = nil) throws(IndexError) -> [IndexHit] {
        try query.withUnsafeBufferPointer { (q) throws(IndexError) in
            try search(q, k: k, ef: ef, filter: filter, exactScore: exactScore)
        }
    }

    public func search(_ query: UnsafeBufferPointer<Float>, k: Int, ef: Int? = nil, filter: IDFilter? = nil,
                       exactScore: ((Int64) -> Float)? = nil) throws(IndexError) -> [IndexHit] {
        try search(query, k: k, ef: ef, filter: filter, exactScore: exactScore, plan: nil)
    }

    /// `search` with the plan forced (tests run every plan at every selectivity).
    package func search(_ query: UnsafeBufferPointer<Float>, k: Int, ef: Int?, filter: IDFilter?,
                        exactScore: ((Int64) -> Float)?, plan forced: FilterPlan?) throws(IndexError) -> [IndexHit] {
        try validateVector(query, dimension: dim)
        guard k > 0, liveCount > 0, entryPoint >= 0 else { return [] }
        let ef = Swift.max(ef ?? efSearch, k)
        let plan = forced ?? filter.map { filterPlan($0, k: k, ef: ef).plan } ?? .graph
        let q = query.baseAddress!
        if plan == .exhaustive {
            return exhaustive(q, k: k, filter: filter, exactScore: exactScore)
        }
        let keys = scratchPool.withScratch(slots: slotCount) { scratch in
            ids.withUnsafeBufferPointer { idp in
                let encoded = UnsafeRawPointer(scratch.queryBuffer(bytes: codec.rowBytes))
                _ = codec.encodeQuery(q, into: UnsafeMutableRawPointer(mutating: encoded))
                let start = greedyDescent(encoded, from: UInt32(entryPoint), topLevel: Int(maxLevel), downTo: 1)
                let slotFilter = filter.map { f in SlotFilter(allows: { f.allows(idp[Int($0)]) }, twoHop: plan == .graphTwoHop) }
                return searchLayer(encoded, entry: start, ef: ef, level: 0, scratch: scratch, filter: slotFilter,
                                   collectTwins: true)
            }
        }
        // A two-hop traversal can run out of candidates before the matching items do.
        if filter != nil && keys.count < k && keys.count < liveCount {
            return exhaustive(q, k: k, filter: filter, exactScore: exactScore)
        }
        var hits = keys.map { key in
            let id = ids[Int(keySlot(key))]
            return IndexHit(id: id, score: exactScore?(id) ?? keyScore(key))
        }
        hits.sort(by: IndexHit.ranksBefore)
        if hits.count > k { hits.removeLast(hits.count - k) }
        return hits
    }

    /// Scores every live item the filter allows (every live item without one) on the
    /// graph's rows, then, with `exactScore`, rescores in order of each item's upper bound
    /// approx + ε until the bound of the next one falls below the k-th exact score:
    /// ε = ‖q − q̂‖·‖x‖ + ‖q̂‖·‖x − x̂‖ + rounding bounds |q·x − q̂·x̂|, so nothing unscored
    /// could still enter the top k and the result is exact.
    func exhaustive(_ q: UnsafePointer<Float>, k: Int, filter: IDFilter?, exactScore: ((Int64) -> Float)?) -> [IndexHit] {
        scratchPool.withScratch(slots: slotCount) { scratch in
            let encoded = scratch.queryBuffer(bytes: codec.rowBytes)
            let queryError = Double(codec.encodeQuery(q, into: encoded))
            let scoreFn = codec.scoreQuery
            var slots: [UInt32] = []
            if let set = filter?.allowedIDs {
                slots.reserveCapacity(set.count)
                for id in set { if let s = slotOfID[id] { slots.append(s) } }
                slots.sort()  // memory order: the rows stream in one direction
            } else {
                slots.reserveCapacity(liveCount)
                for s in 0..<UInt32(slotCount) where isLive(s) && (filter?.allows(ids[Int(s)]) ?? true) { slots.append(s) }
            }
            guard let exactScore else {
                var top = TopK(k: k)
                for s in slots {
                    let score = scoreFn(encoded, row(s), dim)
                    if top.accepts(score: score, id: ids[Int(s)]) { top.offer(IndexHit(id: ids[Int(s)], score: score)) }
                }
                return top.sorted()
            }
            var qNorm2 = 0.0, qHatNorm2 = 0.0
            let decodedQuery = codec.encoding == .int8 ? codec.decodeQuery(encoded) : nil
            for i in 0..<dim {
                qNorm2 += Double(q[i]) * Double(q[i])
                let h = decodedQuery.map { Double($0[i]) } ?? Double(q[i])
                qHatNorm2 += h * h
            }
            // Vectors are unit within 1e-3 (validated at insert); floats round at ~1e-6 relative.
            let rounding = 1e-4 * Swift.max(1, qNorm2.squareRoot())
            var bounds: [(upper: Float, slot: UInt32)] = slots.map { s in
                let approx = Double(scoreFn(encoded, row(s), dim))
                let epsilon = 1.001 * queryError + qHatNorm2.squareRoot() * Double(codec.residual(row(s))) + rounding
                return (Float(approx + epsilon), s)
            }
            bounds.sort { $0.upper > $1.upper }
            var top = TopK(k: k)
            for (upper, s) in bounds {
                if top.isFull && upper < top.worst.score { break }
                let id = ids[Int(s)]
                let score = exactScore(id)
                if top.accepts(score: score, id: id) { top.offer(IndexHit(id: id, score: score)) }
            }
            return top.sorted()
        }
    }
}
