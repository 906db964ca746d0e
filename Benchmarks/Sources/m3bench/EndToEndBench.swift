import ArgumentParser
import Foundation
import M3Model
import M3Search

/// `m3bench end-to-end`: query latency of the real hybrid path (`SearchIndex.search(encoded:)`:
/// HNSW + sparse candidates, exact dense/sparse/ColBERT rescoring from the SQLite file,
/// weighted fusion, grouping) on a 100k-chunk index built from stored (synthetic) encodings,
/// next to the time the full model takes to encode a 16-token query.
///
/// The index (cached under Benchmarks/work/, rebuilt only when missing or larger than asked;
/// a smaller one, such as a build that was stopped, is continued from its last commit):
/// - dense: 1,000 Gaussian cluster centres in 1024-d; a chunk is its centre plus isotropic
///   noise of the same norm (cosine ≈ 0.7 to its centre), normalised;
/// - sparse: `SparseGenerator` (Zipfian ids over 250k, 60 weights per chunk, see there);
/// - ColBERT: `--tokens` rows per chunk, each the chunk's dense vector plus uniform noise
///   (cosine ≈ 0.7 to it), normalised, stored as float16 like real rows.
/// Four chunks per document (the default `groupByDocument` then has something to group).
/// Queries: a random chunk's dense vector plus noise (cosine ≈ 0.8), 10 sparse terms drawn as
/// in `m3bench sparse` from that chunk, 16 ColBERT rows around the query's dense vector.
struct EndToEndBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "end-to-end", abstract: "Hybrid query latency (encoding excluded) vs 16-token query encode time.")

    @Option(help: "Chunks in the index.") var chunks = 100_000
    @Option(help: "ColBERT rows per chunk (storage: chunks × tokens × 2 KB).") var tokens = 32
    @Option(help: "Queries per round.") var queries = 500
    @Option(help: "ColBERT rows per query (the 16-token query's rows after <s>).") var queryTokens = 16
    @Option(help: "Rounds; medians of per-round percentiles are reported.") var rounds = 3
    @Option(help: "16-token encodes timed per round.") var encodes = 10
    @Option(help: "Model folder (encoder timing; the index records its identity).")
    var model = "/work/main/Fixtures/generated/bge-m3-full-random"
    @Option(help: "Index path (default Benchmarks/work/e2e_<chunks>x<tokens>.m3index).") var index: String?
    @Option(help: "Seed.") var seed: UInt64 = 2024
    @Option(help: "Chunks per write (one transaction) while building.") var batch = 2000
    @Option(help: "Write this run's record (JSON) to this file.") var json: String?
    @Flag(help: "Append the record to Benchmarks/results/end_to_end.jsonl.") var record = false
    @Flag(help: "Build with the default storage (int8 dense, so an int8 graph; the default ColBERT codec) instead of float16 ColBERT and float32 dense; the default path gets a -default suffix.")
    var defaultStorage = false

    /// float16 ColBERT and float32 dense, as this benchmark's recorded figures were measured
    /// (`m3bench storage` compares the storage encodings), or what `m3search index` uses.
    var options: IndexOptions {
        defaultStorage ? IndexOptions() : IndexOptions(colbertStorage: .float16, denseStorage: .f32)
    }

    static let centres = 1000
    static let chunksPerDocument = 4

    func run() throws {
        let m3 = try BGEM3(folder: model)
        let d = m3.config.hiddenSize
        let path = index ?? QueryBench.workDir + "/e2e_\(chunks)x\(tokens)\(defaultStorage ? "-default" : "").m3index"
        let data = SyntheticChunks(seed: seed, dimension: d, centres: Self.centres, tokens: tokens)
        var searchIndex = try SearchIndex(path: path, model: m3, options: options)
        if searchIndex.chunkCount != chunks {
            // Chunks regenerate from their number, and every write holds whole documents in
            // order, so a smaller index of whole documents is this one's prefix.
            let stored = searchIndex.chunkCount
            let resume = stored < chunks && stored % Self.chunksPerDocument == 0
                && searchIndex.documentCount == stored / Self.chunksPerDocument
            if !resume { searchIndex = try SearchIndex(path: Self.fresh(path), model: m3, options: options) }
            try build(searchIndex, from: resume ? stored : 0, data: data)
        }
        // Fold the write-ahead log into the file, as a long-lived index would be after an
        // automatic checkpoint: otherwise every page read first searches a large WAL index.
        try searchIndex.checkpoint()
        print("index: \(path), \(searchIndex.chunkCount) chunks × \(tokens) ColBERT rows, \(searchIndex.documentCount) documents")

        // Queries, pre-encoded.
        var rng = SeededRNG(seed: seed ^ 0x9E11)
        let encodedQueries: [Embedding] = (0..<queries).map { _ in
            data.query(chunk: Int(rng.next() % UInt64(chunks)), rows: queryTokens, &rng)
        }
        let options = SearchOptions()  // k 10, candidates 100, weights 0.4/0.3/0.3, hybrid, weighted
        // Warm-up: page cache and allocator.
        for q in encodedQueries.prefix(50) { _ = try searchIndex.search(encoded: q, options: options) }

        var stageRounds: [String: [QueryBench.Stats]] = [:]
        var candidateCounts: [Int] = []
        var encodeMedians: [Double] = []
        var encRng = SeededRNG(seed: seed ^ 0xE1C)
        for round in 0..<rounds {
            var stage: [String: [UInt64]] = [:]
            for q in encodedQueries {
                let t = QueryBench.now()
                let report = try searchIndex.search(encoded: q, options: options)
                let total = QueryBench.now() - t
                stage["total", default: []].append(total)
                stage["candidates", default: []].append(UInt64(report.candidateSeconds * 1e9))
                stage["scoring", default: []].append(UInt64(report.scoreSeconds * 1e9))
                stage["fusion", default: []].append(UInt64(report.fuseSeconds * 1e9))
                if round == 0 { candidateCounts.append(report.candidates) }
            }
            for (k, v) in stage { stageRounds[k, default: []].append(QueryBench.Stats(nanoseconds: v)) }
            // The encoder: a 16-token query (<s> + 14 ids + </s>), all three outputs, as search(_:) asks.
            let ids: [Int32] = [0] + (0..<14).map { _ in Int32(4 + encRng.next() % 249_990) } + [2]
            let encOptions = EncodeOptions(maxLength: 512, outputs: .all)  // SearchIndex.queryMaxLength
            _ = try m3.encode(tokenIDs: [ids], options: encOptions)
            var enc: [Double] = []
            for _ in 0..<encodes {
                let t = QueryBench.now()
                _ = try m3.encode(tokenIDs: [ids], options: encOptions)
                enc.append(Double(QueryBench.now() - t) / 1e6)
            }
            enc.sort()
            encodeMedians.append(enc[enc.count / 2])
            print("round \(round + 1): total p50 \(QueryBench.fmt(stageRounds["total"]!.last!.p50)) ms, p95 \(QueryBench.fmt(stageRounds["total"]!.last!.p95)) ms; 16-token encode median \(QueryBench.fmt(enc[enc.count / 2], 1)) ms")
        }
        let med = stageRounds.mapValues(QueryBench.Stats.median)
        let encode = encodeMedians.sorted()[encodeMedians.count / 2]
        let meanCandidates = Double(candidateCounts.reduce(0, +)) / Double(max(candidateCounts.count, 1))
        print("\n\(chunks) chunks, \(queries) queries × \(rounds) rounds, candidates per query \(QueryBench.fmt(meanCandidates, 1)) (median of rounds, ms):")
        print("| stage | p50 | p95 | mean |")
        print("|---|---:|---:|---:|")
        for s in ["candidates", "scoring", "fusion", "total"] {
            let x = med[s]!
            print("| \(s) | \(QueryBench.fmt(x.p50)) | \(QueryBench.fmt(x.p95)) | \(QueryBench.fmt(x.mean)) |")
        }
        print("| encode 16 tokens (full model, median) | \(QueryBench.fmt(encode, 1)) | | |")
        print("total p95 / encode = \(QueryBench.fmt(100 * med["total"]!.p95 / encode, 1)) % (target ≤ 10 %)")

        var rec = QueryBench.environment()
        rec["benchmark"] = "end_to_end"
        rec["parameters"] = ["chunks": chunks, "colbert_rows_per_chunk": tokens, "queries": queries, "query_tokens": queryTokens,
                             "rounds": rounds, "seed": seed, "k": options.k, "candidates": options.candidates,
                             "weights": (options.weights ?? SearchIndex.builtInWeights).description, "index_bytes": (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0] as [String: Any]
        rec["median_ms"] = med.mapValues { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] }
        rec["rounds_ms"] = stageRounds.mapValues { $0.map { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] } }
        rec["encode16_ms_median_per_round"] = encodeMedians
        rec["encode16_ms"] = encode
        rec["mean_candidates"] = meanCandidates
        rec["p95_over_encode"] = med["total"]!.p95 / encode
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/end_to_end.jsonl" : nil, jsonOut: json)
    }

    /// Removes the index files at `path`; returns it.
    static func fresh(_ path: String) -> String {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        return path
    }

    /// Adds chunks `start..<chunks`, one write per `batch` chunks (whole documents).
    func build(_ index: SearchIndex, from start: Int, data: SyntheticChunks) throws {
        let t0 = Date()
        let perWrite = max(Self.chunksPerDocument, batch / Self.chunksPerDocument * Self.chunksPerDocument)
        if start > 0 { print("continuing the build at chunk \(start)") }
        var next = start
        while next < chunks {
            let end = min(next + perWrite, chunks)
            var docs: [(id: String, chunks: [SearchIndex.EncodedChunk])] = []
            var c = next
            while c < end {
                let n = min(Self.chunksPerDocument, chunks - c)
                docs.append((id: "doc\(c / Self.chunksPerDocument)", chunks: (c ..< c + n).map { data.chunk($0) }))
                c += n
            }
            try index.add(encoded: docs)
            if end / 10_000 != next / 10_000 || end == chunks {
                print("built \(end) chunks in \(QueryBench.fmt(Date().timeIntervalSince(t0), 0)) s")
            }
            next = end
        }
    }
}

/// The seeded synthetic encodings: any chunk regenerates from its index alone.
struct SyntheticChunks {
    let seed: UInt64
    let dimension: Int
    let tokens: Int
    let centres: [[Float]]
    let sparse: SparseGenerator

    init(seed: UInt64, dimension: Int, centres count: Int, tokens: Int) {
        self.seed = seed
        self.dimension = dimension
        self.tokens = tokens
        var rng = SeededRNG(seed: seed)
        centres = (0..<count).map { _ in (0..<dimension).map { _ in Float(rng.normal()) } }
        sparse = SparseGenerator(seed: seed)
    }

    func rng(_ chunk: Int, _ stream: UInt64) -> SeededRNG {
        var r = SeededRNG(seed: seed &+ UInt64(chunk) &* 0x9E37_79B9 &+ stream &* 0x1_0000_0001)
        _ = r.next()
        return r
    }

    static func normalize(_ v: inout [Float]) {
        var s: Float = 0
        for x in v { s += x * x }
        let inv = 1 / s.squareRoot()
        for i in v.indices { v[i] *= inv }
    }

    func dense(_ chunk: Int) -> [Float] {
        var r = rng(chunk, 1)
        let c = centres[Int(r.next() % UInt64(centres.count))]
        var v = c.map { $0 + Float(r.normal()) }
        Self.normalize(&v)
        return v
    }

    func sparseVector(_ chunk: Int) -> SparseVector {
        var r = rng(chunk, 2)
        let s = sparse.document(terms: 60, &r)
        return SparseVector(ids: s.ids, weights: s.weights)
    }

    /// `rows` unit rows around `centre` (a unit vector): centre + uniform noise whose norm
    /// is about the centre's (per-coordinate ±√3/√d), so cosine ≈ 0.7.
    func rows(around centre: [Float], count rows: Int, _ r: inout SeededRNG) -> [Float] {
        let d = dimension
        let a = Float(3.0.squareRoot() / Double(d).squareRoot())
        var out = [Float](repeating: 0, count: rows * d)
        for row in 0..<rows {
            var s: Float = 0
            for i in 0..<d {
                let u = Float(Int64(bitPattern: r.next()) >> 40) * 0x1p-23  // uniform in [-1, 1)
                let x = centre[i] + a * u
                out[row * d + i] = x
                s += x * x
            }
            let inv = 1 / s.squareRoot()
            for i in 0..<d { out[row * d + i] *= inv }
        }
        return out
    }

    func chunk(_ i: Int) -> SearchIndex.EncodedChunk {
        let dense = dense(i)
        var r = rng(i, 3)
        let colbert = MultiVector(dimension: dimension, values: rows(around: dense, count: tokens, &r))
        let text = "Synthetic chunk \(i): stored encodings for the end-to-end benchmark, "
            + String(repeating: "lorem ipsum dolor sit amet ", count: 4)
        return SearchIndex.EncodedChunk(text: text, tokenCount: tokens + 1,
                                        embedding: Embedding(tokenIDs: [], dense: dense, sparse: sparseVector(i), colbert: colbert))
    }

    func query(chunk i: Int, rows: Int, _ r: inout SeededRNG) -> Embedding {
        var dense = dense(i)
        // Noise of half the vector's norm: cosine ≈ 0.9 to the chunk.
        let scale = Float(0.5 / Double(dimension).squareRoot())
        for k in dense.indices { dense[k] += scale * Float(r.normal()) }
        Self.normalize(&dense)
        let doc = sparseVector(i)
        let q = sparse.query(terms: 10, from: doc.ids, hasPostings: { _ in true }, &r)
        let colbert = MultiVector(dimension: dimension, values: self.rows(around: dense, count: rows, &r))
        return Embedding(tokenIDs: [Int32](repeating: 5, count: rows + 1), dense: dense,
                         sparse: SparseVector(ids: q.ids, weights: q.weights), colbert: colbert)
    }
}
