import ArgumentParser
import Foundation
import M3Search

/// `m3search query`: hybrid search of an index.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Search an index with fused dense, sparse and ColBERT scores.")

    @Argument(help: "The query text.")
    var text: String

    @OptionGroup var location: IndexLocation

    @OptionGroup(title: "Filters") var filterOptions: FilterOptions

    @Option(name: .long, help: "Number of results.")
    var k: Int = 10

    @Option(name: .long, help: ArgumentHelp(
        "Fusion weights for dense,sparse,colbert; a weight of 0 skips that mode.",
        discussion: "Default: the index's saved weights (`m3search tune --save`), else 0.4,0.3,0.3.", valueName: "d,s,c"))
    var weights: String?

    @Option(name: .long, help: "hybrid, dense, sparse or colbert.")
    var mode: SearchOptions.Mode = .hybrid

    @Option(name: .long, help: "weighted (Σ wᵢ·sᵢ / Σ wᵢ) or rrf (reciprocal rank fusion, k = 60).")
    var fusion: SearchOptions.Fusion = .weighted

    @Option(name: .long, help: "Candidates from HNSW and from the sparse index before exact rescoring.")
    var candidates: Int = 100

    @Option(name: .long, help: "HNSW search breadth (default: max(64, candidates)).")
    var efSearch: Int?

    @Flag(name: .long, help: "One result per chunk instead of per document.")
    var chunks = false

    @Flag(name: .long, help: "Machine-readable JSON output.")
    var json = false

    @Flag(name: .long, help: "Show candidate counts, time per stage and the model's load times.")
    var explain = false

    func validate() throws {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw ValidationError("the query is empty") }
        if k < 1 { throw ValidationError("--k must be at least 1") }
        if candidates < 1 { throw ValidationError("--candidates must be at least 1") }
        if let efSearch, efSearch < 1 { throw ValidationError("--ef-search must be at least 1") }
        if let weights { do { _ = try FusionWeights(parsing: weights) } catch { throw ValidationError("\(error)") } }
    }

    func run() throws {
        let w = try weights.map { try FusionWeights(parsing: $0) }
        try location.path.requireExisting()
        let searchIndex = try location.open(.existing(readOnly: !location.path.isWritable))
        let report = try searchIndex.search(text, options: SearchOptions(k: k, weights: w, mode: mode, fusion: fusion,
                                                                         candidates: candidates, groupByDocument: !chunks,
                                                                         efSearch: efSearch, filter: try filterOptions.filter()))
        if json {
            var out = JSONWriter()
            report.writeJSON(query: text, explain: explain, modelLoad: searchIndex.model.loadTimings, to: &out)
            out.raw("\n")
            out.flush()
            return
        }
        let terms = queryTerms(text)
        let tty = isatty(1) == 1
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
        }
    }
}
