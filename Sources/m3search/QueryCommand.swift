import ArgumentParser
import Foundation
import M3Search

/// `m3search query`: hybrid search of an index.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Search an index with fused dense, sparse and ColBERT scores.",
        discussion: """
        With --queries FILE the model and the index are loaded once for every query of the file: each query's \
        results are one JSON line ({"id", "query", "results"}), or, with --run-out, lines of a TREC run.
        """)

    @Argument(help: "The query text (or --queries FILE).")
    var text: String?

    @Option(name: .long, help: ArgumentHelp(
        "Run every query of this file: BEIR queries.jsonl ({\"_id\": …, \"text\": …} per line) or one query per line (its id the line number); - reads stdin.",
        valueName: "file"), completion: .file())
    var queries: String?

    @OptionGroup var runFile: RunFileOptions

    @OptionGroup var location: IndexLocation

    @OptionGroup(title: "Filters") var filterOptions: FilterOptions

    @Option(name: [.customShort("k"), .long], help: "Number of results.")
    var k: Int = 10

    @Option(name: .long, help: ArgumentHelp(
        "Fusion weights for dense,sparse,colbert; a weight of 0 skips that mode.",
        discussion: "Default: the index's saved weights (`m3search tune --save`), else 0.4,0.3,0.3.", valueName: "d,s,c"))
    var weights: String?

    @Option(name: .long, help: "Which scores rank: all three fused, or one mode alone.")
    var mode: SearchOptions.Mode = .hybrid

    @Option(name: .long, help: "weighted: Σ wᵢ·sᵢ / Σ wᵢ; rrf: reciprocal rank fusion, k = 60.")
    var fusion: SearchOptions.Fusion = .weighted

    @Option(name: .long, help: "Candidates from HNSW and from the sparse index before exact rescoring.")
    var candidates: Int = 100

    @Option(name: .long, help: "HNSW search breadth; max(64, candidates) when not given.")
    var efSearch: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Where dense candidates come from: exact-scan (score every dense vector, read from the file; no graph is loaded), graph (HNSW), or auto.",
        discussion: "auto: exact-scan for a single query (opening the graph costs more than one scan), graph with --queries or --ef-search.",
        valueName: "auto|graph|exact-scan"))
    var denseCandidates: DenseCandidatesChoice = .auto

    @Flag(name: .long, help: "One result per chunk instead of per document.")
    var chunks = false

    @Flag(name: [.customShort("j"), .long], help: "Machine-readable JSON output.")
    var json = false

    @OptionGroup var colorOption: ColorOption

    @Flag(name: .long, help: "Show candidate counts, time per stage, the model's load times and the index's open times.")
    var explain = false

    func validate() throws {
        switch (text, queries) {
        case (nil, nil): throw ValidationError("give a query text, or --queries FILE")
        case (.some, .some): throw ValidationError("give a query text or --queries FILE, not both")
        case (let text?, nil):
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw ValidationError("the query is empty") }
            if runFile.runOut != nil { throw ValidationError("--run-out needs --queries FILE (a run holds query ids)") }
        case (nil, .some): break
        }
        if runFile.runOut != nil && chunks { throw ValidationError("--run-out ranks documents: it cannot be combined with --chunks") }
        try runFile.check()
        if k < 1 { throw ValidationError("--k must be at least 1") }
        if candidates < 1 { throw ValidationError("--candidates must be at least 1") }
        if let efSearch, efSearch < 1 { throw ValidationError("--ef-search must be at least 1") }
        if let weights { do { _ = try FusionWeights(parsing: weights) } catch { throw ValidationError("\(error)") } }
    }

    func run() throws {
        let w = try weights.map { try FusionWeights(parsing: $0) }
        try location.path.requireExisting()
        // Before the model loads: a bad queries file fails fast.
        let batch = try queries.map(readBatchQueries)
        let scan = denseCandidates == .exactScan || (denseCandidates == .auto && batch == nil && efSearch == nil)
        var searchIndex: SearchIndex
        if scan {
            var openOptions = IndexOptions.existing(readOnly: true)
            openOptions.denseCandidates = .exactScan
            searchIndex = try location.open(openOptions, quiet: true)
            if searchIndex.identityUpgrade == .pendingWritableOpen && location.path.isWritable {
                // The one-time model identity upgrade needs a writable open (with the graph).
                searchIndex = try location.open(.existing())
            } else {
                location.announce(searchIndex)
            }
        } else {
            searchIndex = try location.open(.existing(readOnly: !location.path.isWritable))
        }
        let options = SearchOptions(k: k, weights: w, mode: mode, fusion: fusion, candidates: candidates,
                                    groupByDocument: !chunks, efSearch: efSearch, filter: try filterOptions.filter())
        if let batch { return try runBatch(batch, searchIndex, options) }
        guard let text else { return }
        let report = try searchIndex.search(text, options: options)
        if json {
            var out = JSONWriter()
            report.writeJSON(query: text, explain: explain, modelLoad: searchIndex.model.loadTimings,
                             indexOpen: searchIndex.openTimings, to: &out)
            out.raw("\n")
            out.flush()
            Self.exitWithoutTeardown()
        }
        let terms = queryTerms(text)
        let tty = colorOption.enabled(on: 1)
        if report.results.isEmpty { print("no results") }
        for r in report.results {
            let scores = [("dense", r.dense), ("sparse", r.sparse), ("colbert", r.colbert)]
                .map { "\($0.0) \($0.1.map { String(format: "%.4f", $0) } ?? "-")" }.joined(separator: "  ")
            print(String(format: "%2d. %.4f  ", r.rank, r.score) + "\(r.path)#\(r.chunk)  [\(scores)]")
            print("    " + snippet(r.text, terms: terms, highlight: tty))
        }
        if explain {
            print(String(format: "candidates: %d dense + %d sparse → %d unique; encode %.1f ms, candidates %.1f ms, scoring %.1f ms, fusion %.1f ms",
                         report.denseCandidates, report.sparseCandidates, report.candidates, report.encodeSeconds * 1000,
                         report.candidateSeconds * 1000, report.scoreSeconds * 1000, report.fuseSeconds * 1000))
            if let documents = report.filterDocuments, let chunks = report.filterChunks {
                print("filter: \(documents) documents, \(chunks) chunks match; candidates: \(report.filterPlan ?? "-")")
            }
            print(searchIndex.model.loadTimings.description)
            print(searchIndex.openTimings.description)
        }
        Self.exitWithoutTeardown()
    }

    /// Ends a one-shot query once its output is written: the process would otherwise free
    /// the open index piece by piece (the graph's buffers, the tables, the model) only to
    /// exit. Safe here: a query writes nothing to the index, and SQLite recovers whatever a
    /// connection left unclosed (its write-ahead log) at the next open, as after any exit.
    private static func exitWithoutTeardown() -> Never {
        fflush(nil)  // every output stream (print's buffer among them)
        Foundation.exit(0)
    }

    /// `--queries`: every query through the one open index; JSON lines on stdout, or the
    /// run file. Search errors stop the batch (a bad query is not skipped in silence).
    private func runBatch(_ batch: [BatchQuery], _ searchIndex: SearchIndex, _ options: SearchOptions) throws {
        if let runOut = runFile.runOut {
            var runs: [(query: String, ranking: [(id: String, score: Float)])] = []
            for q in batch {
                let results = try searchIndex.search(q.text, options: options).results
                runs.append((q.id, results.map { ($0.path, $0.score) }))
            }
            try writeTRECRun(runs, tag: runFile.runTag, to: runOut)
            return
        }
        for q in batch {
            let report = try searchIndex.search(q.text, options: options)
            var one = JSONWriter()
            report.writeJSON(query: q.text, explain: explain, modelLoad: searchIndex.model.loadTimings,
                             indexOpen: searchIndex.openTimings, to: &one)
            var out = JSONWriter()
            out.raw("{\"id\":"); out.string(q.id)
            out.raw(",\"query\":"); out.string(q.text)
            out.raw(",")
            out.raw(String(decoding: one.bytes.dropFirst(), as: UTF8.self))  // the report's fields, after its "{"
            out.raw("\n")
            out.flush()
        }
    }
}

/// `--dense-candidates`.
enum DenseCandidatesChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, graph
    case exactScan = "exact-scan"
}
