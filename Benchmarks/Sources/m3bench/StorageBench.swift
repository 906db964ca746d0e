import ArgumentParser
import Foundation
import M3Index
import M3Model
import M3Search

/// `m3bench storage`: ColBERT and dense storage encodings on real encodings of the full-size
/// random-weight model (Benchmarks/storage_data.py: 5,000 chunks, 100 queries), against
/// float16 ColBERT + float32 dense.
///
/// Part 1, exact candidates (per query the engine's pool taken exactly: dense top 100 ∪
/// sparse top 100, no ANN, so only the encoding differs): bytes per row, ColBERT score error
/// over the pool (mean / max |Δ| vs float16), top-10 agreement of hybrid weighted fusion
/// 0.4 / 0.3 / 0.3 and of ColBERT alone within the pool, and the MaxSim time of 100 candidates
/// per query (from encoded blobs in memory, the per-query PQ table included), with its ratio
/// to float16 in the same run. Dense encodings take their own pools. PQ codebooks are trained as the index does:
/// on the first batch (`--first-batch` chunks, ≤ 16,384 rows evenly sampled).
///
/// Part 2 (`--indexes`), real indexes built with `SearchIndex.add(encoded:)` in batches of
/// `--first-batch` chunks (one document per chunk): engine hybrid top-10 (candidates 100,
/// per chunk) agreement vs the float16/float32 index, dense-mode recall@10 vs exact float32,
/// and the size by component from `IndexInfo` (what `m3search info` prints).
struct StorageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "ColBERT / dense storage encodings: size, fidelity, scoring speed, index size.")

    @Option(help: "Folder written by Benchmarks/storage_data.py.") var data = QueryBench.workDir + "/storage"
    @Option(help: "ColBERT encodings (comma-separated; binary-l1 = sign bits with the ‖x‖₁/d factor; +near-duplicates:<cos> prunes).")
    var colbert = "f16,int8,binary,binary-l1,pq8,pq16,pq32,f16+near-duplicates:0.9,pq16+near-duplicates:0.9"
    @Option(help: "Dense encodings (comma-separated).") var dense = "f32,f16,int8"
    @Option(help: "Chunks in the first batch (PQ training; index commit size).") var firstBatch = 500
    @Option(help: "Timing rounds, interleaved over the encodings (median reported).") var rounds = 5
    @Flag(help: "Also build real indexes (part 2).") var indexes = false
    @Option(help: "Index configurations colbert/dense (the first is the reference).")
    var indexConfigs = "f16/f32,f16/int8,pq16/f32,pq16/int8"
    @Option(help: "Model folder (part 2: indexes record its identity).")
    var model = "/work/main/Fixtures/generated/bge-m3-full-random"
    @Flag(help: "Append the record to Benchmarks/results/storage.jsonl.") var record = false

    static let weights: (Float, Float, Float) = (0.4, 0.3, 0.3)

    func run() throws {
        let t0 = Date()
        let corpus = try StorageData(folder: data)
        let n = corpus.chunks, nq = corpus.queries, d = corpus.dimension
        print("data: \(n) chunks (\(corpus.rowCount(0..<n)) ColBERT rows), \(nq) queries, d \(d), loaded in \(QueryBench.fmt(Date().timeIntervalSince(t0), 1)) s")
        let queries = (0..<nq).map { corpus.embedding(n + $0) }

        // Reference: float32 dense, sparse, float16 ColBERT (the stored vectors as encoded).
        // Candidates per query as the engine takes them (exactly here, no ANN): dense top 100 ∪
        // sparse top 100; every encoding is compared on these pools.
        let refBlobs = (0..<n).map { VectorCoding.encodeColBERT(corpus.colbert($0), storage: .float16) }
        let denseRef = scoreMatrix(nq, n) { q, c in Similarity.dot(queries[q].dense!, corpus.dense(c)) }
        let sparseRef = scoreMatrix(nq, n) { q, c in Scores.sparse(queries[q].sparse!, corpus.sparse[c]) }
        func pool(_ dense: [[Float]], _ q: Int) -> [Int] {
            Array(Set(topK(n, 100) { dense[q][$0] }).union(topK(n, 100) { sparseRef[q][$0] }.filter { sparseRef[q][$0] > 0 })).sorted()
        }
        let pools = (0..<nq).map { pool(denseRef, $0) }
        let colbertRef = colbertScores(queries, refBlobs, pools: pools, storage: .float16, codebook: nil)
        func hybridTop(_ q: Int, _ ids: [Int], dense: [[Float]], colbert: [Int: Float]) -> [Int] {
            Array(ids.sorted {
                let a = fused(dense[q][$0], sparseRef[q][$0], colbert[$0]!), b = fused(dense[q][$1], sparseRef[q][$1], colbert[$1]!)
                return a != b ? a > b : $0 < $1
            }.prefix(10))
        }
        func colbertTop(_ ids: [Int], _ colbert: [Int: Float]) -> [Int] {
            Array(ids.sorted { colbert[$0]! != colbert[$1]! ? colbert[$0]! > colbert[$1]! : $0 < $1 }.prefix(10))
        }
        let refTop = (0..<nq).map { hybridTop($0, pools[$0], dense: denseRef, colbert: colbertRef[$0]) }
        let refColTop = (0..<nq).map { colbertTop(pools[$0], colbertRef[$0]) }
        // Timing candidates: each query's first 100 pool members.
        let candidates = pools.map { Array($0.prefix(100)) }
        let pairs = pools.reduce(0) { $0 + $1.count }
        print("candidate pools: \(QueryBench.fmt(Double(pairs) / Double(nq), 1)) chunks per query (dense top 100 ∪ sparse top 100)")

        var colbertRecords: [[String: Any]] = []
        var timings: [String: Double] = [:]
        var timed: [(spec: String, blobs: [Data], storage: ColBERTStorage, codebook: ProductQuantizer?)] = []
        print("(scoring every encoding; the table follows the interleaved timing)")
        print("\n| ColBERT encoding | bytes/row | rows kept | score mean \\|Δ\\| | max \\|Δ\\| | hybrid top-10 agreement | ColBERT-only top-10 | µs / 100 candidates | ÷ f16 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for spec in colbert.split(separator: ",").map(String.init) where !spec.isEmpty {
            let parts = spec.split(separator: "+", maxSplits: 1).map(String.init)
            let name = parts[0]
            let pruning = parts.count > 1 ? ColBERTPruning(parts[1])! : .none
            let storage = ColBERTStorage(name == "binary-l1" ? "binary" : name)!
            let factor: VectorCoding.SignFactor = name == "binary-l1" ? .meanAbsolute : .normCorrected
            var codebook: ProductQuantizer?
            let tTrain = Date()
            if case .productQuantized(let per) = storage {
                var rows: [Float] = []
                for c in 0..<min(firstBatch, n) { rows += pruning.apply(corpus.colbert(c)).values }
                codebook = try ProductQuantizer.train(rows: SearchIndex.codebookSample(rows, dimension: d), dimension: d, subspaces: d / per)
            }
            let trainSeconds = Date().timeIntervalSince(tTrain)
            let tEnc = Date()
            var blobs = [Data](repeating: Data(), count: n)
            blobs.withUnsafeMutableBufferPointer { out in
                let base = out.baseAddress!
                parallel(2) { w in
                    for c in stride(from: w, to: n, by: 2) {
                        base[c] = VectorCoding.encodeColBERT(pruning.apply(corpus.colbert(c)), storage: storage,
                                                             codebook: codebook, signFactor: factor)
                    }
                }
            }
            let encodeSeconds = Date().timeIntervalSince(tEnc)
            let bytes = blobs.reduce(0) { $0 + $1.count }
            let rows = blobs.reduce(0) { $0 + VectorCoding.colbertRowCount($1.count, dimension: d, storage: storage)! }
            let scores = colbertScores(queries, blobs, pools: pools, storage: storage, codebook: codebook)
            var sumErr = 0.0, maxErr = 0.0
            for q in 0..<nq { for c in pools[q] { let e = Double(abs(scores[q][c]! - colbertRef[q][c]!)); sumErr += e; maxErr = max(maxErr, e) } }
            var agree = 0.0, agreeCol = 0.0
            for q in 0..<nq {
                agree += Double(Set(hybridTop(q, pools[q], dense: denseRef, colbert: scores[q])).intersection(refTop[q]).count) / 10
                agreeCol += Double(Set(colbertTop(pools[q], scores[q])).intersection(refColTop[q]).count) / 10
            }
            agree /= Double(nq)
            agreeCol /= Double(nq)
            let perRow = Double(bytes) / Double(rows)
            timed.append((spec, blobs, storage, codebook))
            colbertRecords.append(["encoding": spec, "bytes_per_row": perRow, "rows_kept_fraction": Double(rows) / Double(corpus.rowCount(0..<n)),
                                   "score_mean_abs_error": sumErr / Double(pairs), "score_max_abs_error": maxErr,
                                   "hybrid_top10_agreement": agree, "colbert_top10_agreement": agreeCol,
                                   "train_seconds": trainSeconds, "encode_seconds": encodeSeconds])
        }
        // Timing, interleaved: each round times every encoding once, in turn.
        var perRound = [[Double]](repeating: [], count: timed.count)
        for _ in 0..<rounds {
            for (i, t) in timed.enumerated() {
                perRound[i].append(timeRerank(queries, t.blobs, candidates, storage: t.storage, codebook: t.codebook))
            }
        }
        for (i, t) in timed.enumerated() { timings[t.spec] = perRound[i].sorted()[perRound[i].count / 2] }
        for i in colbertRecords.indices {
            let spec = colbertRecords[i]["encoding"] as! String
            let us = timings[spec]!, ratio = us / (timings["f16"] ?? .nan)
            colbertRecords[i]["us_per_100_candidates"] = us
            colbertRecords[i]["us_per_100_candidates_rounds"] = perRound[i]
            colbertRecords[i]["time_ratio_to_f16"] = ratio
            let r = colbertRecords[i]
            func f(_ k: String, _ digits: Int) -> String { QueryBench.fmt(r[k] as! Double, digits) }
            print("| \(spec) | \(f("bytes_per_row", 1)) | \(f("rows_kept_fraction", 3)) | \(String(format: "%.2e", r["score_mean_abs_error"] as! Double)) | \(String(format: "%.2e", r["score_max_abs_error"] as! Double)) | \(f("hybrid_top10_agreement", 3)) | \(f("colbert_top10_agreement", 3)) | \(QueryBench.fmt(us, 0)) | \(QueryBench.fmt(ratio, 2)) |")
        }

        var denseRecords: [[String: Any]] = []
        print("\n| dense encoding | bytes/vector | score max \\|Δ\\| | hybrid top-10 agreement | dense-only top-10 |")
        print("|---|---:|---:|---:|---:|")
        let refDenseTop = (0..<nq).map { q in top10(n) { denseRef[q][$0] } }
        for name in dense.split(separator: ",").map(String.init) where !name.isEmpty {
            let storage = DenseStorage(rawValue: name)!
            let vectors = (0..<n).map { c in
                VectorCoding.encodeDense(corpus.dense(c), storage: storage).withUnsafeBytes {
                    VectorCoding.decodeDense($0, dimension: d, storage: storage, unit: true)!
                }
            }
            let scores = scoreMatrix(nq, n) { q, c in Similarity.dot(queries[q].dense!, vectors[c]) }
            // This encoding's own candidate pools; ColBERT (float16) scored for the new members.
            let variantPools = (0..<nq).map { pool(scores, $0) }
            let extra = colbertScores(queries, refBlobs, pools: (0..<nq).map { q in variantPools[q].filter { colbertRef[q][$0] == nil } },
                                      storage: .float16, codebook: nil)
            var maxErr = 0.0, agree = 0.0, agreeDense = 0.0
            for q in 0..<nq {
                for c in 0..<n { maxErr = max(maxErr, Double(abs(scores[q][c] - denseRef[q][c]))) }
                let colbert = colbertRef[q].merging(extra[q]) { a, _ in a }
                let top = hybridTop(q, variantPools[q], dense: scores, colbert: colbert)
                agree += Double(Set(top).intersection(refTop[q]).count) / 10
                agreeDense += Double(Set(top10(n) { scores[q][$0] }).intersection(refDenseTop[q]).count) / 10
            }
            agree /= Double(nq)
            agreeDense /= Double(nq)
            print("| \(name) | \(storage.bytes(dimension: d)) | \(String(format: "%.2e", maxErr)) | \(QueryBench.fmt(agree, 3)) | \(QueryBench.fmt(agreeDense, 3)) |")
            denseRecords.append(["encoding": name, "bytes": storage.bytes(dimension: d), "score_max_abs_error": maxErr,
                                 "hybrid_top10_agreement": agree, "dense_top10_agreement": agreeDense])
        }

        var indexRecords: [[String: Any]] = []
        if indexes {
            let m3 = try BGEM3(folder: model)
            var refResults: [[String]] = []
            print("\n| index colbert/dense | build s | engine hybrid top-10 agreement | dense-mode recall@10 | file MB | B/chunk | docs+text | dense | HNSW | sparse | ColBERT | other |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for config in indexConfigs.split(separator: ",").map(String.init) {
                let parts = config.split(separator: "/").map(String.init)
                let cs = ColBERTStorage(parts[0])!, ds = DenseStorage(rawValue: parts[1])!
                let path = data + "/indexes/\(parts[0])_\(parts[1]).m3index"
                try FileManager.default.createDirectory(atPath: data + "/indexes", withIntermediateDirectories: true)
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
                let tb = Date()
                let index = try SearchIndex(path: path, model: m3, options: IndexOptions(colbertStorage: cs, denseStorage: ds))
                for start in stride(from: 0, to: n, by: firstBatch) {
                    let docs = (start ..< min(start + firstBatch, n)).map { c in
                        (id: "c\(c)", chunks: [SearchIndex.EncodedChunk(text: corpus.texts[c], tokenCount: corpus.tokenCount(c),
                                                                        embedding: corpus.embedding(c))])
                    }
                    try index.add(encoded: docs)
                }
                try index.checkpoint()
                let buildSeconds = Date().timeIntervalSince(tb)
                var results: [[String]] = [], recall = 0.0
                for q in 0..<nq {
                    results.append(try index.search(encoded: queries[q], options: SearchOptions(k: 10, groupByDocument: false)).results.map(\.path))
                    let dm = try index.search(encoded: queries[q], options: SearchOptions(k: 10, mode: .dense, groupByDocument: false)).results
                    recall += Double(Set(dm.map(\.path)).intersection(refDenseTop[q].map { "c\($0)" }).count) / 10
                }
                recall /= Double(nq)
                if refResults.isEmpty { refResults = results }
                let agree = zip(results, refResults).map { Double(Set($0).intersection($1).count) / 10 }.reduce(0, +) / Double(nq)
                let info = try IndexInfo.read(path: path)
                let c = info.components
                func per(_ b: Int64) -> String { QueryBench.fmt(Double(b) / Double(info.chunks), 0) }
                print("| \(config) | \(QueryBench.fmt(buildSeconds, 0)) | \(QueryBench.fmt(agree, 3)) | \(QueryBench.fmt(recall, 3)) | \(QueryBench.fmt(Double(info.fileBytes) / 1e6, 1)) | \(QueryBench.fmt(info.bytesPerChunk, 0)) | \(per(c.documentsAndText)) | \(per(c.dense)) | \(per(c.hnswGraph)) | \(per(c.sparse)) | \(per(c.colbert)) | \(per(c.other)) |")
                indexRecords.append(["config": config, "build_seconds": buildSeconds, "engine_hybrid_top10_agreement": agree,
                                     "dense_mode_recall10": recall, "file_bytes": info.fileBytes, "chunks": info.chunks,
                                     "tokens": info.tokens, "colbert_rows": info.colbertRows,
                                     "components": ["documents_and_text": c.documentsAndText, "dense": c.dense, "hnsw": c.hnswGraph,
                                                    "sparse": c.sparse, "colbert": c.colbert, "other": c.other]])
            }
        }

        var rec = QueryBench.environment()
        rec["benchmark"] = "storage"
        rec["parameters"] = ["chunks": n, "queries": nq, "colbert_rows": corpus.rowCount(0..<n), "chunk_tokens": corpus.tokenTotal(0..<n),
                             "first_batch": firstBatch, "weights": "0.4,0.3,0.3", "rounds": rounds,
                             "encoder_precision": corpus.meta["precision"] as? String ?? "?"] as [String: Any]
        rec["colbert"] = colbertRecords
        rec["dense"] = denseRecords
        if !indexRecords.isEmpty { rec["indexes"] = indexRecords }
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/storage.jsonl" : nil, jsonOut: nil)
        print("\ntotal \(QueryBench.fmt(Date().timeIntervalSince(t0), 0)) s")
    }

    func fused(_ d: Float, _ s: Float, _ c: Float) -> Float {
        (Self.weights.0 * d + Self.weights.1 * s + Self.weights.2 * c) / (Self.weights.0 + Self.weights.1 + Self.weights.2)
    }

    func top10(_ n: Int, _ score: (Int) -> Float) -> [Int] { topK(n, 10, score) }

    /// The k best indices, ties to the lower index.
    func topK(_ n: Int, _ k: Int, _ score: (Int) -> Float) -> [Int] {
        let s = (0..<n).map(score)
        return Array((0..<n).sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }.prefix(k))
    }

    func scoreMatrix(_ nq: Int, _ n: Int, _ f: (Int, Int) -> Float) -> [[Float]] {
        (0..<nq).map { q in (0..<n).map { f(q, $0) } }
    }

    /// ColBERT scores of each query's pool from the encoded blobs (two threads).
    func colbertScores(_ queries: [Embedding], _ blobs: [Data], pools: [[Int]], storage: ColBERTStorage,
                       codebook: ProductQuantizer?) -> [[Int: Float]] {
        var out = [[Int: Float]](repeating: [:], count: queries.count)
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress!
            parallel(2) { w in
                for q in stride(from: w, to: queries.count, by: 2) {
                    let scorer = ColBERTScorer(query: queries[q].colbert!, storage: storage, codebook: codebook)
                    var scores: [Int: Float] = [:]
                    for c in pools[q] { scores[c] = blobs[c].withUnsafeBytes { scorer.score($0)! } }
                    base[q] = scores
                }
            }
        }
        return out
    }

    /// Mean µs to score one query's 100 candidates (one thread), over all queries once.
    func timeRerank(_ queries: [Embedding], _ blobs: [Data], _ candidates: [[Int]], storage: ColBERTStorage,
                    codebook: ProductQuantizer?) -> Double {
        var sink: Float = 0
        let t = QueryBench.now()
        for (q, ids) in candidates.enumerated() {
            let scorer = ColBERTScorer(query: queries[q].colbert!, storage: storage, codebook: codebook)
            for c in ids { sink += blobs[c].withUnsafeBytes { scorer.score($0)! } }
        }
        let us = Double(QueryBench.now() - t) / 1e3 / Double(candidates.count)
        if sink.isNaN { print("") }
        return us
    }
}

/// Runs body(0..<n) on n threads.
func parallel(_ n: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let run = escaping
        DispatchQueue.concurrentPerform(iterations: n) { run($0) }
    }
}

/// The cached encodings of Benchmarks/storage_data.py (chunks first, then queries).
struct StorageData {
    let meta: [String: Any]
    let chunks: Int
    let queries: Int
    let dimension: Int
    let texts: [String]
    let idsOffsets: [Int]
    let denseValues: [Float]
    let sparse: [SparseVector]
    let colbertHalves: [UInt16]
    let colbertOffsets: [Int]

    init(folder: String) throws {
        func load<T>(_ name: String, _: T.Type) throws -> [T] {
            let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
            return data.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
        }
        guard let m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/meta.json"))) as? [String: Any] else {
            throw ValidationError("\(folder)/meta.json unreadable; run Benchmarks/storage_data.py")
        }
        meta = m
        chunks = m["chunks"] as! Int
        queries = m["queries"] as! Int
        dimension = m["dim"] as! Int
        texts = try String(contentsOfFile: folder + "/texts.jsonl", encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: String])["text"]!
        }
        idsOffsets = try load("ids_off.i64", Int64.self).map(Int.init)
        denseValues = try load("dense.f32", Float.self)
        let sIDs = try load("sparse_ids.i32", Int32.self), sW = try load("sparse_w.f32", Float.self)
        let sOff = try load("sparse_off.i64", Int64.self).map(Int.init)
        sparse = (0..<(sOff.count - 1)).map { i in SparseVector(maxOf: (sOff[i] ..< sOff[i + 1]).map { (sIDs[$0], sW[$0]) }) }
        colbertHalves = try load("colbert.f16", UInt16.self)
        colbertOffsets = try load("colbert_off.i64", Int64.self).map(Int.init)
    }

    func dense(_ i: Int) -> [Float] { Array(denseValues[i * dimension ..< (i + 1) * dimension]) }

    func colbert(_ i: Int) -> MultiVector {
        let slice = colbertHalves[colbertOffsets[i] * dimension ..< colbertOffsets[i + 1] * dimension]
        return MultiVector(dimension: dimension, values: slice.map { Float(Float16(bitPattern: $0)) })
    }

    func tokenCount(_ i: Int) -> Int { idsOffsets[i + 1] - idsOffsets[i] }
    func rowCount(_ r: Range<Int>) -> Int { colbertOffsets[r.upperBound] - colbertOffsets[r.lowerBound] }
    func tokenTotal(_ r: Range<Int>) -> Int { idsOffsets[r.upperBound] - idsOffsets[r.lowerBound] }

    func embedding(_ i: Int) -> Embedding {
        Embedding(tokenIDs: [], dense: dense(i), sparse: sparse[i], colbert: colbert(i))
    }
}
