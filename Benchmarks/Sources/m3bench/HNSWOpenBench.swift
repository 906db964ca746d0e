// m3bench hnsw-open: what an open index costs in memory with the int8 graph (the default for
// int8 dense storage) against the float32 graph, through SearchIndex itself.
import ArgumentParser
import CM3Kernels
import Foundation
import M3Index
import M3Model
import M3Search

struct HNSWOpenBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hnsw-open",
        abstract: "Open an index and report the memory its in-memory state takes, with the int8 or the float32 graph.",
        discussion: """
            --build writes the index first (one chunk per document, dense vectors from --base \
            stored as int8, one int8 ColBERT row and 8 sparse terms per chunk) and exits; build \
            and measurement are separate processes so the build's heap does not count. The \
            measurement loads the model, then opens the index read-only and reports the growth \
            of the resident set (VmRSS) and of its anonymous part (RssAnon: heap, not file \
            pages) across the open, then runs dense-only searches (k 10, 10 candidates from an \
            efSearch traversal) through SearchIndex and reports recall@10 against --truth.
            """)

    @Option(help: "Model folder (its hidden size must equal the vectors' dimension).") var model: String
    @Option(help: "Index path.") var index: String
    @Option(help: "Base vectors (n × dim float32, unit norm): the chunks' dense vectors.") var base: String
    @Option(help: "Query vectors (nq × dim float32).") var queries: String?
    @Option(help: "Exact top-10 of each query (nq × 10 int32 base rows).") var truth: String?
    @Option(help: "Chunks to build from the first rows of --base (0: all).") var chunks = 0
    @Option(help: "Graph encoding to open with: int8 or float32.") var graph = "int8"
    @Option(help: "efSearch values for the queries, comma-separated.") var efSearch = "16,32,64,128"
    @Flag(help: "Build the index (it must not exist) and exit.") var build = false
    @Flag(help: "Append the record to Benchmarks/results/hnsw.jsonl.") var record = false

    func run() throws {
        let m3 = try BGEM3(folder: model)
        let file = try MappedFloats(path: base)
        let d = m3.config.hiddenSize
        guard file.count % d == 0 else { throw ValidationError("\(base) is not whole rows of \(d) floats") }
        let n = chunks > 0 ? min(chunks, file.count / d) : file.count / d
        if build { return try buildIndex(m3, file, n: n, d: d) }

        let encoding: HNSWIndex.VectorEncoding
        switch graph {
        case "int8": encoding = .int8
        case "float32", "f32": encoding = .float32
        default: throw ValidationError("--graph is int8 or float32, not '\(graph)'")
        }
        let before = (rss: residentKB("VmRSS"), anon: residentKB("RssAnon"))
        var options = IndexOptions.existing(readOnly: true)
        options.graphEncoding = encoding
        let t0 = now()
        let searchIndex = try SearchIndex(path: index, model: m3, options: options)
        let openS = now() - t0
        let after = (rss: residentKB("VmRSS"), anon: residentKB("RssAnon"), peak: residentKB("VmHWM"))
        let graphBytes = searchIndex.graphMemoryBytes
        print(String(format: "open: %d chunks, %@ graph, %.1f s; resident +%.0f MB (anonymous +%.0f MB), graph %.0f MB counted, peak RSS %.0f MB (model loaded before: %.0f MB)",
                     searchIndex.chunkCount, encoding.description, openS, Double(after.rss - before.rss) / 1e3,
                     Double(after.anon - before.anon) / 1e3, Double(graphBytes) / 1e6, Double(after.peak) / 1e3,
                     Double(before.rss) / 1e3))
        var rec = QueryBench.environment()
        rec["benchmark"] = "hnsw-open"
        rec["chunks"] = searchIndex.chunkCount
        rec["dim"] = d
        rec["graph"] = encoding.description
        rec["open_s"] = openS
        rec["rss_growth_kb"] = after.rss - before.rss
        rec["anon_growth_kb"] = after.anon - before.anon
        rec["rss_before_kb"] = before.rss
        rec["peak_rss_kb"] = after.peak
        rec["graph_bytes"] = graphBytes
        rec["int8_isa"] = Int(m3ix_i8_isa_level())
        rec["isa"] = Similarity.instructionSet

        if let queries, let truth {
            let q = try readArray(queries, as: Float.self), truthRows = try readArray(truth, as: Int32.self)
            let nq = q.count / d
            guard truthRows.count == nq * 10 else { throw ValidationError("truth has \(truthRows.count) ints, expected \(nq) × 10") }
            var curve: [[String: Any]] = []
            print("| efSearch | recall@10 | QPS (dense-only, through SearchIndex) |")
            print("|---:|---:|---:|")
            for ef in efSearch.split(separator: ",").compactMap({ Int($0) }) {
                let options = SearchOptions(k: 10, mode: .dense, candidates: 10, groupByDocument: false, efSearch: ef)
                var found = 0, best = Double.infinity
                for pass in 0..<2 {  // the first pass pages the rows in
                    var hits = 0
                    let t = now()
                    for i in 0..<nq {
                        let e = Embedding(tokenIDs: [], dense: Array(q[i * d ..< (i + 1) * d]))
                        let results = try searchIndex.search(encoded: e, options: options).results
                        let expected = Set(truthRows[i * 10 ..< (i + 1) * 10].map(Int.init))
                        hits += results.filter { expected.contains(Int($0.path.dropFirst(3)) ?? -1) }.count
                    }
                    if pass > 0 { best = min(best, now() - t) }
                    found = hits
                }
                let recall = Double(found) / Double(nq * 10)
                print(String(format: "| %d | %.4f | %.0f |", ef, recall, Double(nq) / best))
                curve.append(["ef": ef, "recall": recall, "qps": Double(nq) / best])
            }
            rec["curve"] = curve
            rec["rss_after_queries_kb"] = residentKB("VmRSS")
        }
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/hnsw.jsonl" : nil, jsonOut: nil)
    }

    /// One chunk per document ("doc<row>"), committed 2,000 at a time, as the writer stores them.
    func buildIndex(_ m3: BGEM3, _ file: MappedFloats, n: Int, d: Int) throws {
        guard !FileManager.default.fileExists(atPath: index) else { throw ValidationError("\(index) exists; --build writes a new index") }
        let searchIndex = try SearchIndex(path: index, model: m3, options: IndexOptions(colbertStorage: .int8, denseStorage: .int8))
        var rng = SeededRNG(seed: 1313)
        let t0 = now()
        for start in stride(from: 0, to: n, by: 2000) {
            var docs: [(id: String, chunks: [SearchIndex.EncodedChunk])] = []
            for row in start ..< min(start + 2000, n) {
                let dense = Array(UnsafeBufferPointer(start: file.pointer + row * d, count: d))
                let ids = Set((0..<8).map { _ in Int32(rng.next() % 250_000) + 5 }).sorted()
                let sparse = SparseVector(ids: ids, weights: ids.map { _ in Float(rng.next() % 1000) / 4000 + 0.05 })
                let e = Embedding(tokenIDs: [], dense: dense, sparse: sparse, colbert: MultiVector(dimension: d, values: dense))
                docs.append((id: "doc\(row)", chunks: [SearchIndex.EncodedChunk(text: "row \(row)", tokenCount: 2, embedding: e)]))
            }
            try searchIndex.add(encoded: docs)
            let done = min(start + 2000, n)
            if done % 10_000 == 0 || done == n { print(String(format: "built %d chunks in %.0f s", done, now() - t0)) }
        }
        try searchIndex.checkpoint()
    }
}
