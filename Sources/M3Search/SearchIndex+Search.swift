import Foundation
import M3Index
import M3Model
import M3Store

/// A candidate chunk with its exact per-mode scores.
struct ScoredChunk {
    var chunkID: Int64
    var documentID: Int64 = 0
    var ordinal = 0
    var charStart = 0
    var charEnd = 0
    var text = ""
    var dense: Float?
    var sparse: Float?
    var colbert: Float?
    var fused: Float = 0
}

extension SearchIndex {
    /// Queries are encoded with at most this many tokens (BGE-M3's usual query length).
    static let queryMaxLength = 512

    /// Searches the index: encode the query, gather candidates (HNSW top-N ∪ exact sparse
    /// top-N), score every candidate exactly in each mode, fuse, and return the top k.
    ///
    /// Throws `SearchError.invalidQuery` for an empty query, `.invalidOptions` for k ≤ 0
    /// or a non-positive candidate count, `.emptyIndex` when nothing is indexed.
    public func search(_ query: String, options: SearchOptions = SearchOptions()) throws -> SearchReport {
        guard !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw SearchError.invalidQuery("the query is empty")
        }
        try validate(options)
        let t0 = Date()
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        var outputs: OutputKinds = []
        if w.dense > 0 || w.colbert > 0 { outputs.insert(.dense) }   // dense also feeds candidates
        if w.sparse > 0 || w.colbert > 0 { outputs.insert(.sparse) }
        if w.colbert > 0 { outputs.insert(.colbert) }
        let q = try model.encode([query], options: EncodeOptions(maxLength: Self.queryMaxLength,
                                                                outputs: outputs,
                                                                pooling: Pooling(rawValue: settings.pooling) ?? .cls,
                                                                normalize: settings.normalize))[0]
        var report = try search(encoded: q, options: options)
        report.encodeSeconds = Date().timeIntervalSince(t0) - report.candidateSeconds - report.scoreSeconds - report.fuseSeconds
        return report
    }

    func validate(_ options: SearchOptions) throws {
        if options.k < 1 { throw SearchError.invalidOptions("k must be at least 1 (got \(options.k))") }
        if options.k > 10_000 { throw SearchError.invalidOptions("k must be at most 10000 (got \(options.k))") }
        if options.candidates < 1 { throw SearchError.invalidOptions("the candidate count must be at least 1 (got \(options.candidates))") }
        guard let w = options.weights else { return }
        if ![w.dense, w.sparse, w.colbert].allSatisfy({ $0.isFinite && $0 >= 0 }) || w.dense + w.sparse + w.colbert <= 0 {
            throw SearchError.invalidOptions("weights must be non-negative and not all zero (got \(w))")
        }
    }

    /// The search pipeline on an already encoded query (benchmarks time it without the encoder).
    package func search(encoded q: Embedding, options: SearchOptions) throws -> SearchReport {
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        var report = SearchReport(results: [])
        let t1 = Date()
        return try stateLock.read {
            guard hnsw.count > 0 else { throw SearchError.emptyIndex(path) }
            let n = max(options.candidates, options.k)
            // 1. Candidates.
            let found = try candidates(for: q, n: n, efSearch: options.efSearch,
                                       fromGraph: w.dense > 0 || w.colbert > 0, fromPostings: w.sparse > 0 || w.colbert > 0)
            report.denseCandidates = found.graph.count
            report.sparseCandidates = found.postings.count
            let ids = Set(found.graph).union(found.postings)
            report.candidates = ids.count
            let t2 = Date()
            report.candidateSeconds = t2.timeIntervalSince(t1)
            // 2. Exact scores.
            var scored = try score(Array(ids).sorted(), query: q, weights: w)
            let t3 = Date()
            report.scoreSeconds = t3.timeIntervalSince(t2)
            // 3. Fuse, group, cut.
            Self.fuse(&scored, weights: w, fusion: options.mode == .hybrid ? options.fusion : .weighted)
            var kept = Self.top(scored, k: options.k, groupByDocument: options.groupByDocument)
            try fillTexts(&kept)
            report.results = try kept.enumerated().map { i, c in
                // Stored rows are checked before they become results: a damaged file must
                // fail loudly, not trap or answer with an empty path (found by Fuzz/FuzzIndex).
                guard let info = documentInfo[c.documentID] else {
                    throw StoreError.corrupt(path: path, detail: "chunk \(c.chunkID) belongs to no document")
                }
                guard c.charStart >= 0, c.charStart <= c.charEnd else {
                    throw StoreError.corrupt(path: path, detail: "chunk \(c.chunkID) has the character range \(c.charStart)..<\(c.charEnd)")
                }
                return SearchResult(rank: i + 1, score: c.fused, dense: c.dense, sparse: c.sparse,
                                    colbert: c.colbert, path: info.path, metadata: info.metadata,
                                    chunk: c.ordinal, chunkID: c.chunkID, charRange: c.charStart ..< c.charEnd, text: c.text)
            }
            report.fuseSeconds = Date().timeIntervalSince(t3)
            return report
        }
    }

    /// The candidate chunk ids: HNSW's top n by dense score and the exact sparse top n,
    /// searched at the same time (two threads; both structures are read-only here). The
    /// caller holds `stateLock` for reading. Evaluation pools take the same candidates.
    func candidates(for q: Embedding, n: Int, efSearch: Int?, fromGraph: Bool, fromPostings: Bool) throws -> (graph: [Int64], postings: [Int64]) {
        let dense = fromGraph ? q.dense : nil
        let terms = fromPostings ? q.sparse.map { zip($0.ids, $0.weights).map { (token: $0, weight: $1) } } : nil
        var found: [Result<[IndexHit], Error>?] = [nil, nil]
        found.withUnsafeMutableBufferPointer { out in
            concurrently(2) { i in
                if i == 0, let dense {
                    out[0] = Result { try hnsw.search(dense, k: n, ef: max(efSearch ?? hnsw.efSearch, n)) }
                } else if i == 1, let terms, !terms.isEmpty {
                    out[1] = Result { try sparse.search(terms, k: n) }
                }
            }
        }
        return (try found[0]?.get().map(\.id) ?? [], try found[1]?.get().map(\.id) ?? [])
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

    /// Exact dense, sparse and ColBERT scores of the given chunks (modes with weight 0 skipped),
    /// without their texts (`fillTexts` fetches those for the few results kept).
    ///
    /// Per candidate nothing is decoded or copied but the dense vector: the dense score uses
    /// the graph's copy, the sparse score looks the query's tokens up in the in-memory posting
    /// lists (summed in query-token order, so it equals `Scores.sparse` on the stored vector
    /// bit for bit), and the ColBERT score runs the MaxSim kernel on the float16 blob where
    /// SQLite holds it. Reading and converting rows to float32 used to cost ~0.25 ms per
    /// 32-row candidate, more than the rest of the query.
    func score(_ ids: [Int64], query q: Embedding, weights w: FusionWeights) throws -> [ScoredChunk] {
        guard !ids.isEmpty else { return [] }
        let d = settings.dimension
        let qColBERT = w.colbert > 0 ? q.colbert : nil
        if let qc = qColBERT, qc.dimension != d {
            throw SearchError.invalidQuery("ColBERT query rows have \(qc.dimension) values; the index has \(d)")
        }
        // The query tokens' posting lists, looked up once (nil: no chunk has the token).
        let queryLists = w.sparse > 0 ? (q.sparse?.ids ?? []).map { sparse.postings[$0] } : []
        // Built once per query (PQ: the query × centroid table), shared by both halves.
        let scorer = qColBERT.map { ColBERTScorer(query: $0, storage: colbertRowStorage, codebook: colbertCodebook) }
        // Two halves (ids ascending, so each reads a compact part of the file), one per
        // connection and thread: reading the rows and MaxSim dominate the query.
        let parts = ids.count >= 32 ? 2 : 1
        var results = [Result<[ScoredChunk], Error>](repeating: .success([]), count: parts)
        results.withUnsafeMutableBufferPointer { out in
            concurrently(parts) { p in
                let slice = ids[ids.count * p / parts ..< ids.count * (p + 1) / parts]
                let (connection, lock) = p == 0 ? (reader, readerLock) : (scoringReader, scoringReaderLock)
                lock.lock()
                defer { lock.unlock() }
                out[p] = Result { try score(Array(slice), connection: connection, query: q, weights: w, qColBERT: qColBERT,
                                             queryLists: queryLists, scorer: scorer) }
            }
        }
        return try results.flatMap { try $0.get() }
    }

    private func score(_ ids: [Int64], connection: IndexStore, query q: Embedding, weights w: FusionWeights,
                       qColBERT: MultiVector?, queryLists: [SparseIndex.PostingList?],
                       scorer: ColBERTScorer? = nil) throws -> [ScoredChunk] {
        let d = settings.dimension
        var out: [ScoredChunk] = []
        out.reserveCapacity(ids.count)
        let scorer = scorer ?? qColBERT.map { ColBERTScorer(query: $0, storage: colbertRowStorage, codebook: colbertCodebook) }
        let columns = "id, document_id, ordinal, char_start, char_end" + (qColBERT != nil ? ", colbert" : "")
        // SQLite limits bound parameters; 500 ids per statement is far below it.
        for start in stride(from: 0, to: ids.count, by: 500) {
            let slice = ids[start ..< min(start + 500, ids.count)]
            let sql = "SELECT \(columns) FROM chunks WHERE id IN (\(slice.map { _ in "?" }.joined(separator: ",")))"
            let s = try connection.db.prepare(sql)
            try s.bind(slice.map { .int($0) })
            while try s.step() {
                var c = ScoredChunk(chunkID: s.int(0), documentID: s.int(1), ordinal: Int(s.int(2)),
                                    charStart: Int(s.int(3)), charEnd: Int(s.int(4)))
                if w.dense > 0, let qd = q.dense, let v = hnsw.vector(forID: c.chunkID) {
                    c.dense = Scores.dense(qd, v)
                }
                if w.sparse > 0, let qs = q.sparse {
                    var sum: Float = 0
                    for (i, list) in queryLists.enumerated() {
                        if let list, let j = list.index(of: c.chunkID) { sum += qs.weights[i] * list.weights[j] }
                    }
                    c.sparse = sum
                }
                if let scorer {
                    guard let score = s.withBlob(5, { scorer.score($0) }) else {
                        throw StoreError.corrupt(path: path, detail: "ColBERT vectors of chunk \(c.chunkID) are not whole \(colbertRowStorage) rows of \(d) values")
                    }
                    c.colbert = score
                }
                out.append(c)
            }
        }
        return out
    }

    /// Reads the texts of the given chunks (the results kept, not every candidate).
    func fillTexts(_ chunks: inout [ScoredChunk]) throws {
        guard !chunks.isEmpty else { return }
        readerLock.lock()
        defer { readerLock.unlock() }
        var position: [Int64: Int] = [:]
        for (i, c) in chunks.enumerated() { position[c.chunkID] = i }
        for start in stride(from: 0, to: chunks.count, by: 500) {
            let slice = chunks[start ..< min(start + 500, chunks.count)]
            let s = try reader.db.prepare("SELECT id, text FROM chunks WHERE id IN (\(slice.map { _ in "?" }.joined(separator: ",")))")
            try s.bind(slice.map { .int($0.chunkID) })
            while try s.step() {
                if let i = position[s.int(0)] { chunks[i].text = s.text(1) }
            }
        }
    }

    /// Weighted: Σ wᵢ·sᵢ / Σ wᵢ (FlagEmbedding). RRF: Σ wᵢ / (60 + rankᵢ), ranks within the candidates.
    static func fuse(_ chunks: inout [ScoredChunk], weights w: FusionWeights, fusion: SearchOptions.Fusion = .weighted) {
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

    /// Exact fused scores of every chunk, no candidate generation: the oracle for tests.
    package func exhaustiveSearch(encoded q: Embedding, options: SearchOptions) throws -> [SearchResult] {
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        return try stateLock.read {
            var ids: [Int64] = []
            readerLock.lock()
            do {
                let s = try reader.db.prepare("SELECT id FROM chunks ORDER BY id")
                while try s.step() { ids.append(s.int(0)) }
            } catch { readerLock.unlock(); throw error }
            readerLock.unlock()
            var scored = try score(ids, query: q, weights: w)
            Self.fuse(&scored, weights: w, fusion: .weighted)
            scored.sort { $0.fused != $1.fused ? $0.fused > $1.fused : $0.chunkID < $1.chunkID }
            var kept = Array(scored.prefix(options.k))
            try fillTexts(&kept)
            return kept.enumerated().map { i, c in
                SearchResult(rank: i + 1, score: c.fused, dense: c.dense, sparse: c.sparse, colbert: c.colbert,
                             path: documentInfo[c.documentID]?.path ?? "", metadata: nil, chunk: c.ordinal,
                             chunkID: c.chunkID, charRange: c.charStart ..< c.charEnd, text: c.text)
            }
        }
    }
}
