import Foundation
import M3Model

/// Every query of an evaluation set encoded once and its candidates scored once in all
/// three modes; `rankings(weights:)` then re-fuses them for any weights without touching
/// the model or the file, which is what makes a grid search cheap.
///
/// For given weights the ranking equals `SearchIndex.search` with those weights, `k = depth`
/// and the same candidate count: the candidates of a weight setting are the graph's when
/// dense or ColBERT counts, the postings' when sparse or ColBERT counts, exactly as in search.
public struct CandidatePool: Sendable {
    /// One query's scored candidates and where each came from: a weight setting uses the
    /// graph's alone (dense only), the postings' alone (sparse only) or both (otherwise).
    struct QueryCandidates: Sendable {
        static let fromGraph: UInt8 = 1, fromPostings: UInt8 = 2
        var id: String
        var chunks: [ScoredChunk]
        var sources: [UInt8]

        init(id: String, scored: [ScoredChunk], graph: Set<Int64>, postings: Set<Int64>) {
            self.id = id
            chunks = scored
            sources = scored.map { (graph.contains($0.chunkID) ? Self.fromGraph : 0) | (postings.contains($0.chunkID) ? Self.fromPostings : 0) }
        }

        func candidates(graph: Bool, postings: Bool) -> [ScoredChunk] {
            if graph && postings { return chunks }
            let wanted = graph ? Self.fromGraph : Self.fromPostings
            return zip(chunks, sources).filter { $0.1 & wanted != 0 }.map(\.0)
        }
    }

    var queries: [QueryCandidates]
    var documentPaths: [Int64: String]
    /// Documents ranked per query (the largest metric cutoff).
    public let depth: Int
    /// Chunks scored in all, over every query.
    public var scoredChunks: Int { queries.reduce(0) { $0 + $1.chunks.count } }
    public var queryCount: Int { queries.count }
    /// Seconds spent encoding the queries and scoring their candidates.
    public var encodeSeconds = 0.0
    public var scoreSeconds = 0.0

    /// Document ids (paths) per query id, best first, one per document, at most `depth`.
    public func rankings(weights: FusionWeights) -> [String: [String]] {
        scoredRankings(weights: weights).mapValues { $0.map(\.id) }
    }

    /// The same rankings with each document's fused score (its best chunk's), for a run
    /// file: scores never increase down a list, and equal scores keep the order the
    /// metrics saw (by chunk id).
    public func scoredRankings(weights: FusionWeights) -> [String: [(id: String, score: Float)]] {
        var out: [String: [(id: String, score: Float)]] = [:]
        let graph = weights.dense > 0 || weights.colbert > 0, postings = weights.sparse > 0 || weights.colbert > 0
        for q in queries {
            var chunks = q.candidates(graph: graph, postings: postings)
            Fusion.fuse(&chunks, weights: weights)
            out[q.id] = Fusion.top(chunks, k: depth, groupByDocument: true).map { (documentPaths[$0.documentID] ?? "", $0.fused) }
        }
        return out
    }

    /// The judged query ids in the order of the evaluation set's file.
    public var queryIDs: [String] { queries.map(\.id) }

    /// `set` with each judged id that names no indexed document but resolves, as a path
    /// from the current directory, to one replaced by that document's id: indexed files are
    /// known by their canonical absolute paths, and qrels written with relative paths
    /// (`docs/a.txt`) would otherwise score every query 0. Two ids naming the same file keep
    /// the higher grade.
    public func resolvingRelativePaths(in set: EvaluationSet) -> EvaluationSet {
        let known = Set(documentPaths.values)
        var out = set
        for (query, judgments) in set.qrels {
            var resolved: [String: Int] = [:]
            for (id, grade) in judgments {
                var key = id
                if !known.contains(id), let canonical = Ingestion.canonicalPath(id), known.contains(canonical) { key = canonical }
                resolved[key] = max(resolved[key] ?? grade, grade)
            }
            out.qrels[query] = resolved
        }
        return out
    }

    /// Relevant documents of the qrels that are not in the index, sorted: usually ids that
    /// do not match the paths as indexed.
    public func unknownDocuments(in set: EvaluationSet) -> [String] {
        let known = Set(documentPaths.values)
        return Set(set.qrels.values.flatMap { $0.filter { $0.value > 0 }.keys }).subtracting(known).sorted()
    }

    /// The mean of each metric over the judged queries, for the given weights.
    public func evaluate(weights: FusionWeights, metrics: [RankingMetric], qrels: [String: [String: Int]]) -> [RankingMetric: Double] {
        let ranked = rankings(weights: weights)
        var out: [RankingMetric: Double] = [:]
        for m in metrics { out[m] = RankingMetric.mean(m, rankings: ranked, qrels: qrels) }
        return out
    }
}

extension SearchIndex {
    /// Encodes the set's judged queries (in batches of 256), takes each one's candidates from the
    /// graph and the postings (`candidates` each, at least `depth`), and scores every
    /// candidate once in all three modes.
    ///
    /// Lock story: none of its own; each query's candidates are read and scored through the
    /// reader on one state, so a writer waits for one query at most.
    ///
    /// Throws `M3SearchError`: `.invalidInput` when no query has a relevant judgment
    /// (`underlying`: `EvaluationError.noJudgedQueries`), `.invalidArgument` for a depth or
    /// candidate count below 1, `.emptyIndex` for an empty index, and model or store errors.
    public func candidatePool(for set: EvaluationSet, depth: Int = 100, candidates: Int = 100, efSearch: Int? = nil) throws -> CandidatePool {
        try M3SearchError.boundary { try reader.candidatePool(for: set, depth: depth, candidates: candidates, efSearch: efSearch) }
    }
}

extension IndexReader {
    func candidatePool(for set: EvaluationSet, depth: Int, candidates: Int, efSearch: Int?) throws -> CandidatePool {
        let queries = set.judgedQueries
        guard !queries.isEmpty else {
            throw EvaluationError.noJudgedQueries("none of the \(set.queries.count) queries has a judgment with score > 0 in the qrels (are the query ids the same in both files?)")
        }
        guard depth >= 1, candidates >= 1 else { throw M3SearchError.invalidArgument("Invalid search options: depth and candidates must be at least 1") }
        let all = FusionWeights(dense: 1, sparse: 1, colbert: 1)
        let n = max(candidates, depth)
        var out: [CandidatePool.QueryCandidates] = []
        var encodeSeconds = 0.0, scoreSeconds = 0.0
        // Batches of queries, so the ColBERT vectors of a large query set are never all in memory.
        for start in stride(from: 0, to: queries.count, by: 256) {
            let batch = queries[start ..< min(start + 256, queries.count)]
            let t0 = Date()
            let encoded = try model.encode(batch.map { queryText($0.text) }, options: queryOptions)
            let t1 = Date()
            for (query, q) in zip(batch, encoded) {
                out.append(try withSnapshot { whole in
                    var snapshot = try whole.holdingPostings(of: q.sparse?.ids ?? [])
                    guard snapshot.state.chunkCount > 0 else { throw M3SearchError.emptyIndex(path) }
                    let found: (graph: [Int64], postings: [Int64], scanned: [Int64: [Float]])
                    do {
                        found = try self.candidates(snapshot, for: q, n: n, efSearch: efSearch, fromGraph: true, fromPostings: true)
                    } catch let failure as ImageScanFailed {
                        throw failure.cause
                    }
                    snapshot.state.scannedVectors = found.scanned
                    let ids = Set(found.graph).union(found.postings)
                    return .init(id: query.id, scored: try score(snapshot, ids.sorted(), query: q, weights: all),
                                 graph: Set(found.graph), postings: Set(found.postings))
                })
            }
            encodeSeconds += t1.timeIntervalSince(t0)
            scoreSeconds += Date().timeIntervalSince(t1)
        }
        let paths = shared.current.documentsOnDemand == nil ? shared.read { $0.documents.mapValues(\.path) }
            : try withSnapshot { Dictionary(try $0.stores[0].documents().map { ($0.id, $0.path) }) { a, _ in a } }
        var pool = CandidatePool(queries: out, documentPaths: paths, depth: depth)
        pool.encodeSeconds = encodeSeconds
        pool.scoreSeconds = scoreSeconds
        return pool
    }
}

/// The points of the weight simplex {(d, s, c) : d + s + c = 1, each a multiple of `step`}.
/// Step 0.1 gives 66 points. Throws `M3SearchError.invalidArgument` (`underlying`:
/// `EvaluationError.invalidGrid`) unless 1/step is a whole number from 1 to 100.
public func weightGrid(step: Double) throws -> [FusionWeights] {
    let n = (1 / step).rounded()
    guard step > 0, step.isFinite, abs(1 / step - n) < 1e-6, n >= 1, n <= 100 else {
        throw M3SearchError(EvaluationError.invalidGrid("the step must divide 1 into 1 to 100 equal parts (e.g. 0.1, 0.05, 0.25), got \(step)"))
    }
    let parts = Int(n)
    var out: [FusionWeights] = []
    for d in 0...parts {
        for s in 0...(parts - d) {
            out.append(FusionWeights(dense: Float(d) / Float(parts), sparse: Float(s) / Float(parts),
                                     colbert: Float(parts - d - s) / Float(parts)))
        }
    }
    return out
}
