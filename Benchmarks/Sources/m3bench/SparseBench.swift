import ArgumentParser
import Foundation
import M3Index

/// `m3bench sparse`: exact sparse top-k on BGE-M3-like postings: the pruned (MaxScore)
/// search of `SparseIndex` against three scans that score every document, all checked to
/// return the same ids and scores. `Benchmarks/sparse.py` runs it next to scipy.
///
/// The scans (each gives the exact top k with our tie rule, score desc then id asc):
/// - `taat`: term at a time over every posting of every query term into a dense float
///   accumulator (one slot per document), then one pass over the touched documents.
///   The fastest plain exhaustive scorer; sums run in the same order as the pruned search.
/// - `forward`: a forward index (each chunk's sorted terms) merged with the query for
///   every one of the N chunks: "score every document" literally.
/// - `library`: `SparseIndex.bruteForceSearch`, the library's reference (hash-map accumulator).
struct SparseBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparse", abstract: "Sparse exact top-k: pruned MaxScore vs brute-force scans.")

    @Option(help: "Chunks in the index.") var docs = 100_000
    @Option(help: "Vocabulary size (token ids 0..<vocab).") var vocab = 250_000
    @Option(help: "Distinct weighted tokens per chunk.") var terms = 60
    @Option(help: "Zipf exponent of token frequencies.") var zipf = 1.0
    @Option(help: "Tokens per query.") var queryTerms = 10
    @Option(help: "Queries per round.") var queries = 1000
    @Option(help: "Results per query.") var k = 10
    @Option(help: "Rounds (methods interleaved within each); medians are reported.") var rounds = 3
    @Option(help: "Generator seed.") var seed: UInt64 = 42
    @Option(help: "Write the corpus, queries and our results here for sparse.py (default Benchmarks/work/sparse_<docs>.bin).")
    var data: String?
    @Option(help: "Write this run's record (JSON) to this file.") var json: String?
    @Flag(help: "Append the record to Benchmarks/results/sparse.jsonl.") var record = false
    @Flag(help: "Skip the slow library brute force (hash map).") var skipLibrary = false

    func run() throws {
        var rng = SeededRNG(seed: seed)
        let gen = SparseGenerator(vocabulary: vocab, exponent: zipf, seed: seed)
        let t0 = Date()
        // Forward index, CSR: chunk d's terms are fwdIDs[fwdStart[d] ..< fwdStart[d+1]].
        var fwdStart = [Int](repeating: 0, count: docs + 1)
        var fwdIDs: [Int32] = [], fwdW: [Float] = []
        fwdIDs.reserveCapacity(docs * terms)
        fwdW.reserveCapacity(docs * terms)
        var index = SparseIndex()
        for d in 0..<docs {
            let v = gen.document(terms: terms, &rng)
            fwdIDs += v.ids
            fwdW += v.weights
            fwdStart[d + 1] = fwdIDs.count
            try index.add(document: Int64(d), terms: zip(v.ids, v.weights).map { (token: $0, weight: $1) })
        }
        index.clearDirty()
        var qs: [(ids: [Int32], weights: [Float])] = []
        for _ in 0..<queries {
            let d = Int(rng.next() % UInt64(docs))
            qs.append(gen.query(terms: queryTerms, from: Array(fwdIDs[fwdStart[d] ..< fwdStart[d + 1]]),
                                hasPostings: { index.postings[$0] != nil }, &rng))
        }
        let lengths = index.postings.values.map(\.docs.count).sorted(by: >)
        let touched = qs.map { q in q.ids.reduce(0) { $0 + (index.postings[$1]?.docs.count ?? 0) } }
        let meanTouched = Double(touched.reduce(0, +)) / Double(max(queries, 1))
        print("corpus: \(docs) chunks × \(terms) terms, vocab \(vocab), zipf \(zipf); \(index.tokenCount) tokens with postings; "
              + "longest lists \(lengths.prefix(3).map(String.init).joined(separator: ", ")); built in \(QueryBench.fmt(Date().timeIntervalSince(t0), 1)) s")
        print("queries: \(queries) × \(queryTerms) terms, k = \(k); postings per query: mean \(Int(meanTouched)), max \(touched.max() ?? 0)")

        let scans = SparseScans(docs: docs, fwdStart: fwdStart, fwdIDs: fwdIDs, fwdW: fwdW, index: index)
        let termQueries = qs.map { q in zip(q.ids, q.weights).map { (token: $0, weight: $1) } }

        // Correctness first: every method returns the same hits as the pruned search.
        var expected: [[IndexHit]] = []
        for (qi, q) in termQueries.enumerated() {
            let pruned = try index.search(q, k: k)
            let taat = scans.taat(qs[qi], k: k)
            let forward = scans.forward(qs[qi], k: k)
            guard pruned == taat, pruned == forward else {
                throw ValidationError("query \(qi): results differ\n pruned \(pruned)\n taat \(taat)\n forward \(forward)")
            }
            if !skipLibrary && qi < 50 {
                guard try index.bruteForceSearch(q, k: k) == pruned else { throw ValidationError("query \(qi): library brute force differs") }
            }
            expected.append(pruned)
        }
        print("check: pruned == taat == forward on all \(queries) queries" + (skipLibrary ? "" : " (== library brute force on the first 50)"))

        let dataPath = data ?? QueryBench.workDir + "/sparse_\(docs).bin"
        try SparseDataFile.write(path: dataPath, docs: docs, vocab: vocab, fwdStart: fwdStart, fwdIDs: fwdIDs, fwdW: fwdW,
                                 queries: qs, k: k, expected: expected)

        var methods = ["pruned", "taat", "forward"]
        if !skipLibrary { methods.append("library") }
        var perRound: [String: [QueryBench.Stats]] = [:]
        var sink: Float = 0
        for round in 0..<rounds {
            for m in methods {
                var ns: [UInt64] = []
                ns.reserveCapacity(queries)
                for (qi, q) in termQueries.enumerated() {
                    let t = QueryBench.now()
                    let hits: [IndexHit]
                    switch m {
                    case "pruned": hits = try index.search(q, k: k)
                    case "taat": hits = scans.taat(qs[qi], k: k)
                    case "forward": hits = scans.forward(qs[qi], k: k)
                    default: hits = try index.bruteForceSearch(q, k: k)
                    }
                    ns.append(QueryBench.now() - t)
                    sink += hits.first?.score ?? 0
                }
                perRound[m, default: []].append(QueryBench.Stats(nanoseconds: ns))
            }
            print("round \(round + 1): " + methods.map { "\($0) p50 \(QueryBench.fmt(perRound[$0]!.last!.p50)) ms" }.joined(separator: ", "))
        }
        let med = perRound.mapValues(QueryBench.Stats.median)
        print("\nmedian of \(rounds) rounds, \(queries) queries each (ms):")
        print("| method | p50 | p95 | mean | mean ÷ pruned |")
        print("|---|---:|---:|---:|---:|")
        for m in methods {
            let s = med[m]!
            print("| \(m) | \(QueryBench.fmt(s.p50)) | \(QueryBench.fmt(s.p95)) | \(QueryBench.fmt(s.mean)) | \(QueryBench.fmt(s.mean / med["pruned"]!.mean, 1))× |")
        }
        if sink.isNaN { print("") }

        var rec = QueryBench.environment()
        rec["benchmark"] = "sparse"
        rec["parameters"] = ["docs": docs, "vocab": vocab, "terms_per_doc": terms, "zipf": zipf, "query_terms": queryTerms,
                             "queries": queries, "k": k, "rounds": rounds, "seed": seed,
                             "mean_postings_per_query": meanTouched] as [String: Any]
        rec["median_ms"] = med.mapValues { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] }
        rec["rounds_ms"] = perRound.mapValues { $0.map { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] } }
        rec["data_file"] = dataPath
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/sparse.jsonl" : nil, jsonOut: json)
    }
}

/// The brute-force scorers, over the forward index and the index's posting lists.
final class SparseScans {
    let docs: Int
    let fwdStart: [Int], fwdIDs: [Int32], fwdW: [Float]
    let index: SparseIndex
    private var acc: [Float]
    private var seen: [Bool]
    private var touched: [Int32] = []

    init(docs: Int, fwdStart: [Int], fwdIDs: [Int32], fwdW: [Float], index: SparseIndex) {
        self.docs = docs; self.fwdStart = fwdStart; self.fwdIDs = fwdIDs; self.fwdW = fwdW; self.index = index
        acc = [Float](repeating: 0, count: docs)
        seen = [Bool](repeating: false, count: docs)
        touched.reserveCapacity(docs)
    }

    /// Term at a time into a dense accumulator; query ids ascending (the canonical order).
    func taat(_ q: (ids: [Int32], weights: [Float]), k: Int) -> [IndexHit] {
        var top = SmallTopK(k: k)
        acc.withUnsafeMutableBufferPointer { acc in
            seen.withUnsafeMutableBufferPointer { seen in
                touched.removeAll(keepingCapacity: true)
                for (t, qw) in zip(q.ids, q.weights) {
                    guard let list = index.postings[t] else { continue }
                    list.docs.withUnsafeBufferPointer { ds in
                        list.weights.withUnsafeBufferPointer { ws in
                            for i in 0..<ds.count {
                                let d = Int(ds[i])
                                if !seen[d] { seen[d] = true; touched.append(Int32(d)) }
                                acc[d] += qw * ws[i]
                            }
                        }
                    }
                }
                for d in touched {
                    top.offer(IndexHit(id: Int64(d), score: acc[Int(d)]))
                    acc[Int(d)] = 0
                    seen[Int(d)] = false
                }
            }
        }
        return top.sorted()
    }

    /// Every chunk's sorted terms merged with the sorted query.
    func forward(_ q: (ids: [Int32], weights: [Float]), k: Int) -> [IndexHit] {
        var top = SmallTopK(k: k)
        fwdIDs.withUnsafeBufferPointer { ids in
            fwdW.withUnsafeBufferPointer { ws in
                q.ids.withUnsafeBufferPointer { qi in
                    q.weights.withUnsafeBufferPointer { qw in
                        for d in 0..<docs {
                            var i = 0, j = fwdStart[d]
                            let end = fwdStart[d + 1]
                            var s: Float = 0
                            var hit = false
                            while i < qi.count && j < end {
                                let a = qi[i], b = ids[j]
                                if a == b { s += qw[i] * ws[j]; hit = true; i += 1; j += 1 } else if a < b { i += 1 } else { j += 1 }
                            }
                            if hit { top.offer(IndexHit(id: Int64(d), score: s)) }
                        }
                    }
                }
            }
        }
        return top.sorted()
    }
}

/// The k best hits (score desc, id asc) in a sorted array: k is small (10–100).
struct SmallTopK {
    let k: Int
    var hits: [IndexHit] = []
    init(k: Int) { self.k = k; hits.reserveCapacity(k + 1) }

    @inline(__always)
    mutating func offer(_ h: IndexHit) {
        if hits.count == k, let last = hits.last, !IndexHit.ranksBefore(h, last) { return }
        var i = hits.count
        while i > 0 && IndexHit.ranksBefore(h, hits[i - 1]) { i -= 1 }
        hits.insert(h, at: i)
        if hits.count > k { hits.removeLast() }
    }
    func sorted() -> [IndexHit] { hits }
}

/// The file sparse.py reads (little-endian):
///   "M3SPARSE" u32 version(1) u32 docs u32 vocab u32 queries u32 k
///   docs CSR:    i64 indptr[docs+1]  i32 indices[nnz]  f32 data[nnz]
///   queries CSR: i64 indptr[queries+1]  i32 indices[qnnz]  f32 data[qnnz]
///   expected:    queries × k (i64 id, f32 score), id −1 padding when fewer hits
enum SparseDataFile {
    static func write(path: String, docs: Int, vocab: Int, fwdStart: [Int], fwdIDs: [Int32], fwdW: [Float],
                      queries: [(ids: [Int32], weights: [Float])], k: Int, expected: [[IndexHit]]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var d = Data()
        func put<T>(_ v: T) { withUnsafeBytes(of: v) { d.append(contentsOf: $0) } }
        func putArray<T>(_ a: [T]) { a.withUnsafeBytes { d.append(contentsOf: $0) } }
        d.append(contentsOf: Array("M3SPARSE".utf8))
        for v in [1, docs, vocab, queries.count, k] { put(UInt32(v)) }
        putArray(fwdStart.map(Int64.init))
        putArray(fwdIDs)
        putArray(fwdW)
        var qStart: [Int64] = [0]
        for q in queries { qStart.append(qStart.last! + Int64(q.ids.count)) }
        putArray(qStart)
        putArray(queries.flatMap(\.ids))
        putArray(queries.flatMap(\.weights))
        for hits in expected {
            for i in 0..<k {
                put(i < hits.count ? hits[i].id : -1)
                put(i < hits.count ? hits[i].score : Float(0))
            }
        }
        try d.write(to: URL(fileURLWithPath: path))
    }
}
