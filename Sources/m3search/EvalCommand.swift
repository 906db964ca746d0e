import ArgumentParser
import Foundation
import M3Search

/// The evaluation set and candidate options shared by `eval` and `tune`.
struct EvaluationOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Queries as JSON Lines: {\"_id\": \"…\", \"text\": \"…\"} (BEIR queries.jsonl).", valueName: "file"), completion: .file())
    var queries: String

    @Option(name: .long, help: ArgumentHelp("Judgments as TSV: query-id, corpus-id, score (BEIR qrels; header line optional).", valueName: "file"), completion: .file())
    var qrels: String

    @Option(name: [.customShort("k"), .long], help: "Cutoff of nDCG@k and MRR@k (Recall is at 100).")
    var k: Int = 10

    @Option(name: .long, help: "Candidates from HNSW and from the sparse index per query, as in `m3search query`.")
    var candidates: Int = 100

    @Option(name: .long, help: "HNSW search breadth; max(64, candidates) when not given.")
    var efSearch: Int?

    @OptionGroup var location: IndexLocation

    func check() throws {
        if k < 1 || k > 1000 { throw ValidationError("--k must be from 1 to 1000") }
        if candidates < 1 { throw ValidationError("--candidates must be at least 1") }
        if let efSearch, efSearch < 1 { throw ValidationError("--ef-search must be at least 1") }
    }

    var metrics: [RankingMetric] { [.ndcg(k), .recall(100), .mrr(k)] }

    /// Reads the set, opens the index and builds the candidate pool; notes on stderr what
    /// does not count (queries without a relevant judgment, judged documents not indexed).
    func load(writable: Bool = false, extra: [RankingMetric] = []) throws -> (SearchIndex, EvaluationSet, CandidatePool) {
        let read = try EvaluationSet(queriesFile: queries, qrelsFile: qrels)
        try location.path.requireExisting()
        let index = try location.open(.existing(readOnly: !writable))
        let depth = (metrics + extra).map(\.cutoff).max() ?? 100
        let pool = try index.candidatePool(for: read, depth: depth, candidates: candidates, efSearch: efSearch)
        let set = pool.resolvingRelativePaths(in: read)
        let skipped = set.queries.count - pool.queryCount
        if skipped > 0 {
            note("\(skipped) of \(set.queries.count) queries have no relevant judgment in \(qrels) and are left out")
        }
        let unknown = pool.unknownDocuments(in: set)
        if !unknown.isEmpty {
            note("relevant documents of the qrels not in the index: \(unknown.count) (e.g. \"\(unknown[0])\"); "
                 + "document ids must be the files' paths (absolute, or relative to the current folder) or the ids given to add")
        }
        return (index, set, pool)
    }
}

/// `m3search eval`: retrieval quality of each mode and of the fusions on an evaluation set.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure nDCG@10, Recall@100 and MRR@10 of dense, sparse, ColBERT and fused retrieval on an evaluation set.",
        discussion: """
        Each mode ranks as `m3search query --mode MODE` would; dense+sparse uses the index's default dense and \
        sparse weights, all three the default weights (saved by `m3search tune --save`, else 0.4,0.3,0.3). \
        Metrics are averaged over the queries with at least one relevant judgment.
        """)

    @OptionGroup var evaluation: EvaluationOptions

    @Flag(name: [.customShort("j"), .long], help: "Machine-readable JSON output.")
    var json = false

    @OptionGroup var runFile: RunFileOptions

    func validate() throws {
        try evaluation.check()
        try runFile.check()
    }

    /// The five rankings reported: each mode alone, dense+sparse and all three.
    static func rows(defaults w: FusionWeights) -> [(name: String, weights: FusionWeights)] {
        let pair = w.dense + w.sparse > 0 ? FusionWeights(dense: w.dense, sparse: w.sparse, colbert: 0)
                                           : FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0)
        return [("dense", FusionWeights(dense: 1, sparse: 0, colbert: 0)),
                ("sparse", FusionWeights(dense: 0, sparse: 1, colbert: 0)),
                ("colbert", FusionWeights(dense: 0, sparse: 0, colbert: 1)),
                ("dense+sparse", pair),
                ("dense+sparse+colbert", w)]
    }

    func run() throws {
        let (index, set, pool) = try evaluation.load()
        let metrics = evaluation.metrics
        let t0 = Date()
        let rows = Self.rows(defaults: index.defaultWeights).map { row in
            (row.name, row.weights, pool.evaluate(weights: row.weights, metrics: metrics, qrels: set.qrels))
        }
        let fuseSeconds = Date().timeIntervalSince(t0)
        if let runOut = runFile.runOut {
            // The last row: all three modes with the default weights, what `query` ranks by.
            let scored = pool.scoredRankings(weights: rows[rows.count - 1].1)
            try writeTRECRun(pool.queryIDs.map { ($0, scored[$0] ?? []) }, tag: runFile.runTag, to: runOut)
        }
        if json {
            var out = JSONWriter()
            out.raw("{\"queries\":\(pool.queryCount),\"scored_chunks\":\(pool.scoredChunks),\"results\":[")
            for (i, (name, w, values)) in rows.enumerated() {
                if i > 0 { out.raw(",") }
                out.raw("{\"mode\":"); out.string(name); out.raw(",\"weights\":"); weightsJSON(w, &out)
                for m in metrics { out.raw(",\"\(m)\":\(values[m]!)") }
                out.raw("}")
            }
            out.raw("],\"seconds\":{\"encode\":\(pool.encodeSeconds),\"score\":\(pool.scoreSeconds),\"fuse\":\(fuseSeconds)}}\n")
            out.flush()
            return
        }
        print("mode                   weights (d,s,c)    " + metrics.map { pad("\($0)", 11) }.joined())
        for (name, w, values) in rows {
            print(pad(name, 23) + pad(weightsText(w), 19) + metrics.map { pad(String(format: "%.4f", values[$0]!), 11) }.joined())
        }
        print(String(format: "%d queries, %d candidate chunks scored; encode %.2f s, scoring %.2f s, fusion %.3f s",
                     pool.queryCount, pool.scoredChunks, pool.encodeSeconds, pool.scoreSeconds, fuseSeconds))
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

func weightsText(_ w: FusionWeights) -> String {
    [w.dense, w.sparse, w.colbert].map { String(format: "%g", $0) }.joined(separator: ",")
}

func weightsJSON(_ w: FusionWeights, _ out: inout JSONWriter) {
    out.raw("{\"dense\":"); out.number(w.dense); out.raw(",\"sparse\":"); out.number(w.sparse)
    out.raw(",\"colbert\":"); out.number(w.colbert); out.raw("}")
}
