import Foundation
import M3Index
import M3Model
import M3Store

/// Answers searches: query → encoder → candidates (HNSW ∪ sparse postings) → exact scores
/// → fusion → results.
///
/// Snapshot story: a search reads one published state (graph, postings, document table;
/// see SharedState) and rows through read transactions that see the file exactly as that
/// state's commit left it (`withSnapshot`), so it answers as if no write were running, and
/// never waits for one: a writer builds the next state on a copy and publishes it after
/// its COMMIT. Each search has its own two read-only connections from a pool (WAL lets any
/// number of readers hold their own snapshot of the file).
final class IndexReader: @unchecked Sendable {
    let path: String
    let model: BGEM3
    let settings: IndexSettings
    let shared: SharedState
    private let pool: ReaderPool

    /// Queries are encoded with at most this many tokens (BGE-M3's usual query length).
    static let queryMaxLength = 512

    init(path: String, model: BGEM3, settings: IndexSettings, shared: SharedState) throws {
        self.path = path
        self.model = model
        self.settings = settings
        self.shared = shared
        pool = try ReaderPool(path: path)
    }

    /// The weights a hybrid search uses when `SearchOptions.weights` is nil.
    var defaultWeights: FusionWeights { shared.read { $0.savedWeights ?? SearchIndex.builtInWeights } }

    var queryOptions: EncodeOptions {
        EncodeOptions(maxLength: Self.queryMaxLength, outputs: .all, pooling: settings.pooling, normalize: settings.normalize)
    }

    /// The text a query is encoded as: the index's query prefix ("query: " for e5 models), then the query.
    func queryText(_ query: String) -> String { settings.queryPrefix + query }

    // MARK: - Search

    /// Prepare, encode, search: the steps a batching server takes apart (`SearchIndex+Batching`).
    func search(_ query: String, options: SearchOptions) throws -> SearchReport {
        let t0 = Date()
        let q = try encode([try prepare(query, options: options)])[0]
        var report = try search(encoded: q, options: options)
        report.encodeSeconds = Date().timeIntervalSince(t0) - report.candidateSeconds - report.scoreSeconds - report.fuseSeconds
        return report
    }

    /// Checks a query and its options and tokenizes it, with the outputs its weights need.
    func prepare(_ query: String, options: SearchOptions) throws -> PreparedQuery {
        guard !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw M3SearchError.invalidArgument("Invalid query: the query is empty")
        }
        try Self.validate(options)
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        var outputs: OutputKinds = []
        if w.dense > 0 || w.colbert > 0 { outputs.insert(.dense) }   // dense also feeds candidates
        if w.sparse > 0 || w.colbert > 0 { outputs.insert(.sparse) }
        if w.colbert > 0 { outputs.insert(.colbert) }
        let maxLength = min(Self.queryMaxLength, model.config.maxSequenceLength)
        return PreparedQuery(tokenIDs: model.tokenizer.encode(queryText(query), maxLength: maxLength), outputs: outputs)
    }

    /// Encodes prepared queries in one forward pass (a budget of their total length), with
    /// the union of their outputs. One query gets exactly what `BGEM3.encode` gives its text.
    func encode(_ queries: [PreparedQuery]) throws -> [Embedding] {
        guard !queries.isEmpty else { return [] }
        var options = queryOptions
        options.outputs = queries.reduce(into: OutputKinds()) { $0.formUnion($1.outputs) }
        options.batchTokens = max(1, queries.reduce(0) { $0 + $1.tokenIDs.count })
        return try model.encode(tokenIDs: queries.map(\.tokenIDs), options: options)
    }

    static func validate(_ options: SearchOptions) throws {
        func invalid(_ s: String) -> M3SearchError { .invalidArgument("Invalid search options: \(s)") }
        if options.k < 1 { throw invalid("k must be at least 1 (got \(options.k))") }
        if options.k > 10_000 { throw invalid("k must be at most 10000 (got \(options.k))") }
        if options.candidates < 1 { throw invalid("the candidate count must be at least 1 (got \(options.candidates))") }
        if let f = options.filter {
            if f.paths.count > 1000 { throw invalid("at most 1000 path patterns (got \(f.paths.count))") }
            if f.metadata.count > 100 { throw invalid("at most 100 metadata pairs (got \(f.metadata.count))") }
            if let p = f.paths.first(where: { $0.isEmpty || $0.utf8.count > 4096 }) {
                throw invalid("a path pattern must have 1 to 4096 bytes (got \(p.utf8.count))")
            }
            for d in [f.modifiedAfter, f.modifiedBefore].compactMap({ $0 }) where !d.timeIntervalSince1970.isFinite {
                throw invalid("filter dates must be finite")
            }
        }
        guard let w = options.weights else { return }
        if ![w.dense, w.sparse, w.colbert].allSatisfy({ $0.isFinite && $0 >= 0 }) || w.dense + w.sparse + w.colbert <= 0 {
            throw invalid("weights must be non-negative and not all zero (got \(w))")
        }
    }

    /// The search pipeline on an already encoded query (benchmarks time it without the encoder).
    ///
    /// In scan mode, an image that turns out damaged (a rows part failing its checksum) or
    /// replaced by another process's checkpoint since the open is not an answer: the graph
    /// is loaded as an index opened for many searches would (from the rows, or the new
    /// image), published, and the search runs on it.
    func search(encoded q: Embedding, options: SearchOptions) throws -> SearchReport {
        do {
            return try searchOnce(encoded: q, options: options)
        } catch let failure as ImageScanFailed {
            try loadGraphInsteadOfScan(encoding: failure.encoding)
            return try searchOnce(encoded: q, options: options)
        }
    }

    /// Replaces a scan-mode state by the graph, read in one snapshot of the file.
    private func loadGraphInsteadOfScan(encoding: HNSWIndex.VectorEncoding) throws {
        let state = try pool.withConnections { stores in
            try IndexState.load(from: stores[0], settings: settings, graphEncoding: encoding, postingsOnDemand: true)
        }
        shared.publish(state)
    }

    private func searchOnce(encoded q: Embedding, options: SearchOptions) throws -> SearchReport {
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        var report = SearchReport(results: [])
        let t1 = Date()
        return try withSnapshot { whole in
            var snapshot = try whole.holdingPostings(of: q.sparse?.ids ?? [])
            let state = snapshot.state
            guard state.chunkCount > 0 else { throw M3SearchError.emptyIndex(path) }
            let n = max(options.candidates, options.k)
            let fromGraph = w.dense > 0 || w.colbert > 0, fromPostings = w.sparse > 0 || w.colbert > 0
            // 0. A filter becomes the set of matching chunks, which the candidate generators
            //    below search within (never a cut of unfiltered candidates).
            var allowed: Set<Int64>?
            if let filter = options.filter, !filter.isEmpty {
                let matching = try matchingChunks(filter, in: snapshot)
                let live = matching.chunks.filter { state.containsChunk($0) }
                report.filterDocuments = matching.documents
                report.filterChunks = live.count
                allowed = Set(live)
            }
            // 1. Candidates.
            let ids: Set<Int64>
            if let allowed, allowed.count <= n, fromGraph, state.scan == nil {
                // No more matching chunks than candidates: score them all (what exact
                // candidate generation would return), no traversal needed.
                ids = allowed
                report.filterPlan = "all matching chunks scored"
                report.denseCandidates = allowed.count
            } else {
                let filter = allowed.map { IDFilter(allowing: $0) }
                let found = try candidates(snapshot, for: q, n: n, efSearch: options.efSearch,
                                           fromGraph: fromGraph, fromPostings: fromPostings, filter: filter)
                snapshot.state.scannedVectors = found.scanned
                if state.scan != nil, filter != nil, fromGraph {
                    report.filterPlan = "exact scan of the matching chunks"
                } else if let filter, fromGraph {
                    let ef = max(options.efSearch ?? state.hnsw.efSearch, n)
                    report.filterPlan = state.hnsw.filterPlan(filter, k: n, ef: ef).plan.description
                } else if filter != nil {
                    report.filterPlan = "sparse postings"
                }
                report.denseCandidates = found.graph.count
                report.sparseCandidates = found.postings.count
                ids = Set(found.graph).union(found.postings)
            }
            report.candidates = ids.count
            let t2 = Date()
            report.candidateSeconds = t2.timeIntervalSince(t1)
            // 2. Exact scores.
            var scored = try score(snapshot, Array(ids).sorted(), query: q, weights: w)
            let t3 = Date()
            report.scoreSeconds = t3.timeIntervalSince(t2)
            // 3. Fuse, group, cut.
            Fusion.fuse(&scored, weights: w, fusion: options.mode == .hybrid ? options.fusion : .weighted)
            var kept = Fusion.top(scored, k: options.k, groupByDocument: options.groupByDocument)
            try fillTexts(&kept, from: snapshot)
            let documents = try documentInfos(kept.map(\.documentID), in: snapshot)
            report.results = try kept.enumerated().map { i, c in
                // Stored rows are checked before they become results: a damaged file must
                // fail loudly, not trap or answer with an empty path (found by Fuzz/FuzzIndex).
                guard let info = documents[c.documentID] else {
                    throw StoreError.corrupt(path: path, detail: "chunk \(c.chunkID) belongs to no document")
                }
                guard c.charStart >= 0, c.charStart <= c.charEnd else {
                    throw StoreError.corrupt(path: path, detail: "chunk \(c.chunkID) has the character range \(c.charStart)..<\(c.charEnd)")
                }
                return SearchResult(rank: i + 1, score: c.fused, dense: c.dense, sparse: c.sparse,
                                    colbert: c.colbert, path: info.path, metadata: Self.merged(info.metadata, c.metadata),
                                    chunk: c.ordinal, chunkID: c.chunkID, charRange: c.charStart ..< c.charEnd, text: c.text)
            }
            report.fuseSeconds = Date().timeIntervalSince(t3)
            return report
        }
    }

    /// The candidate chunk ids: HNSW's top n by dense score and the exact sparse top n,
    /// searched at the same time (two threads; both structures are read-only here).
    /// Evaluation pools take the same candidates.
    ///
    /// A state opened for exact scans has no graph: the sparse top n first, then one scan of
    /// the image's rows for the exact dense top n, keeping the vectors of both (`scanned`,
    /// for `denseScore`).
    func candidates(_ snapshot: Snapshot, for q: Embedding, n: Int, efSearch: Int?, fromGraph: Bool, fromPostings: Bool,
                    filter: IDFilter? = nil) throws -> (graph: [Int64], postings: [Int64], scanned: [Int64: [Float]]) {
        let state = snapshot.state
        let dense = fromGraph ? q.dense : nil
        let terms = fromPostings ? q.sparse.map { zip($0.ids, $0.weights).map { (token: $0, weight: $1) } } : nil
        if let scan = state.scan {
            let postings = try terms.map { $0.isEmpty ? [] : try state.sparse.search($0, k: n, filter: filter).map(\.id) } ?? []
            guard let dense = q.dense else { return ([], postings, [:]) }
            let found = try scanImage(scan, stores: snapshot.stores, query: dense, n: fromGraph ? n : 0, filter: filter,
                                      keeping: Set(postings))
            return (found.hits.map(\.id), postings, found.vectors)
        }
        var found: [Result<[IndexHit], Error>?] = [nil, nil]
        found.withUnsafeMutableBufferPointer { out in
            concurrently(2) { i in
                if i == 0, let dense {
                    out[0] = Result { try Self.graphSearch(state.hnsw, dense, n: n, ef: max(efSearch ?? state.hnsw.efSearch, n), filter: filter) }
                } else if i == 1, let terms, !terms.isEmpty {
                    out[1] = Result { try state.sparse.search(terms, k: n, filter: filter) }
                }
            }
        }
        return (try found[0]?.get().map(\.id) ?? [], try found[1]?.get().map(\.id) ?? [], [:])
    }

    /// The exact dense top n over the image's rows and the vectors of those and of
    /// `keeping`: the segments split between the snapshot's two connections, one thread
    /// each, every part read into one buffer per thread in that connection's read
    /// transaction. The image must still be the one the state opened with: another
    /// process's checkpoint since then (which the snapshot's fallback would show), like a
    /// damaged part, throws `ImageScanFailed` (the search then loads the graph), never a
    /// mix of two commits.
    /// Bytes an exact scan reads, checks and scores at a time, per thread.
    static let scanPieceBytes = 256 << 10

    private func scanImage(_ scan: ImageScan, stores: [IndexStore], query: [Float], n: Int, filter: IDFilter?,
                           keeping: Set<Int64>) throws -> (hits: [IndexHit], vectors: [Int64: [Float]]) {
        let threads = min(stores.count, scan.manifest.segments >= 2 ? 2 : 1)
        let changed = ImageScanFailed(encoding: scan.manifest.encoding, cause: M3SearchError(
            .other, "\(path) changed after it was opened for exact scans (another process wrote to it)"))
        var parts = [Result<ImageScan.Search, Error>](repeating: .failure(CancellationError()), count: threads)
        parts.withUnsafeMutableBufferPointer { out in
            concurrently(threads) { p in
                out[p] = Result {
                    let store = stores[p]
                    let manifest = try store.withGraphImagePart(0) { try HNSWIndex.ImageManifest(bytes: Array($0)) }
                    guard manifest == scan.manifest else { throw changed }
                    var search = scan.search(query, n: n, filter: filter, keeping: keeping)
                    // Pieces of whole rows small enough to stay in L2 from the read through the
                    // checksum to the scores (a whole 9 MB part went out to memory and back).
                    var buffer = [UInt8](repeating: 0, count: max(1, Self.scanPieceBytes / scan.rowBytes) * scan.rowBytes)
                    try buffer.withUnsafeMutableBytes { piece in
                        for k in stride(from: p, to: scan.manifest.segments, by: threads) {
                            // Mapped one segment at a time, as an open reads the image.
                            let found = try store.withMappedReads {
                                try store.readGraphImagePart(2 * k + 2, bytes: scan.slots(inSegment: k) * scan.rowBytes, pieces: piece) {
                                    try search.add(segment: k, rows: $0)
                                }
                            }
                            guard found else { throw StoreError.corrupt(path: path, detail: "graph image segment \(k) has no rows part") }
                        }
                    }
                    return search
                }
            }
        }
        do {
            return try ImageScan.Search.finish(try parts.map { try $0.get() })
        } catch let error as IndexError {
            throw ImageScanFailed(encoding: scan.manifest.encoding, cause: StoreError.corrupt(path: path, detail: "\(error)"))
        } catch let error as StoreError {
            guard case .corrupt = error else { throw error }
            throw ImageScanFailed(encoding: scan.manifest.encoding, cause: error)
        }
    }

    /// The graph's top n for a dense query. An int8 graph traverses on codes and rescores
    /// its ef candidates exactly (float query · stored int8 vector) before cutting to n, so
    /// the candidates are the ones a float32 graph of the same vectors would keep.
    static func graphSearch(_ hnsw: HNSWIndex, _ query: [Float], n: Int, ef: Int, filter: IDFilter? = nil) throws -> [IndexHit] {
        guard hnsw.encoding == .int8 else { return try hnsw.search(query, k: n, ef: ef, filter: filter) }
        return try query.withUnsafeBufferPointer { q in
            try hnsw.search(q, k: n, ef: ef, filter: filter, exactScore: { id in hnsw.score(q, id: id) ?? -.infinity })
        }
    }

    /// Exact dense, sparse and ColBERT scores of the given chunks (modes with weight 0 skipped),
    /// without their texts (`fillTexts` fetches those for the few results kept).
    ///
    /// Per candidate nothing is decoded or copied but the dense vector: the dense score uses
    /// the graph's copy, the sparse score looks the query's tokens up in the in-memory posting
    /// lists (summed in query-token order, so it equals `Scores.sparse` on the stored vector
    /// bit for bit), and the ColBERT score runs the MaxSim kernel on the stored blob where
    /// SQLite holds it. Reading and converting rows to float32 used to cost ~0.25 ms per
    /// 32-row candidate, more than the rest of the query.
    func score(_ snapshot: Snapshot, _ ids: [Int64], query q: Embedding, weights w: FusionWeights) throws -> [ScoredChunk] {
        guard !ids.isEmpty else { return [] }
        let state = snapshot.state
        let d = settings.dimension
        let qColBERT = w.colbert > 0 ? q.colbert : nil
        if let qc = qColBERT, qc.dimension != d {
            throw M3SearchError.invalidArgument("Invalid query: ColBERT query rows have \(qc.dimension) values; the index has \(d)")
        }
        // The query tokens' posting lists, looked up once (nil: no chunk has the token).
        let queryLists = w.sparse > 0 ? (q.sparse?.ids ?? []).map { state.sparse.postings[$0] } : []
        // Built once per query (PQ: the query × centroid table), shared by both halves.
        let scorer = qColBERT.map { state.codec.scorer(query: $0) }
        // Two halves (ids ascending, so each reads a compact part of the file), one per
        // connection and thread: reading the rows and MaxSim dominate the query.
        let parts = ids.count >= 32 ? min(2, snapshot.stores.count) : 1
        var results = [Result<[ScoredChunk], Error>](repeating: .success([]), count: parts)
        results.withUnsafeMutableBufferPointer { out in
            concurrently(parts) { p in
                let slice = Array(ids[ids.count * p / parts ..< ids.count * (p + 1) / parts])
                out[p] = Result {
                    try score(state, slice, store: snapshot.stores[p], query: q, weights: w, queryLists: queryLists, scorer: scorer)
                }
            }
        }
        return try results.flatMap { try $0.get() }
    }

    private func score(_ state: IndexState, _ ids: [Int64], store: IndexStore, query q: Embedding, weights w: FusionWeights,
                       queryLists: [SparseIndex.PostingList?], scorer: ColBERTScorer?) throws -> [ScoredChunk] {
        var out: [ScoredChunk] = []
        out.reserveCapacity(ids.count)
        try store.chunkScoringRows(ids: ids, colbert: scorer != nil) { row, colbert in
            var c = ScoredChunk(chunkID: row.id, documentID: row.documentID, ordinal: row.ordinal,
                                charStart: row.charStart, charEnd: row.charEnd)
            if w.dense > 0, let qd = q.dense, let dense = state.denseScore(qd, chunkID: c.chunkID) {
                c.dense = dense
            }
            if w.sparse > 0, let qs = q.sparse {
                var sum: Float = 0
                for (i, list) in queryLists.enumerated() {
                    if let list, let j = list.index(of: c.chunkID) { sum += qs.weights[i] * list.weights[j] }
                }
                c.sparse = sum
            }
            if let scorer {
                guard let score = scorer.score(colbert) else {
                    throw StoreError.corrupt(path: path, detail: "ColBERT vectors of chunk \(c.chunkID) are not whole "
                                             + "\(state.codec.colbertRows) rows of \(settings.dimension) values")
                }
                c.colbert = score
            }
            out.append(c)
        }
        return out
    }

    /// The chunks of the documents `filter` allows: the mtime and metadata conditions in SQL,
    /// the path globs on the ids returned, all in one read transaction.
    func matchingChunks(_ filter: SearchFilter, in snapshot: Snapshot) throws -> (documents: Int, chunks: [Int64]) {
        let patterns = filter.paths.map(PathPattern.init)
        let store = snapshot.stores[0]
        return try store.read {
            var docs = try store.documents(modifiedAfter: filter.modifiedAfter?.timeIntervalSince1970,
                                           modifiedBefore: filter.modifiedBefore?.timeIntervalSince1970,
                                           metadata: filter.metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            if !patterns.isEmpty { docs = docs.filter { d in patterns.contains { $0.matches(d.path) } } }
            return (docs.count, try store.chunkIDs(documentIDs: docs.map(\.id)))
        }
    }

    /// The documents of `ids` as results show them: from the state, or from the snapshot's
    /// file when the state reads them on demand (scan mode).
    func documentInfos(_ ids: [Int64], in snapshot: Snapshot) throws -> [Int64: DocumentInfo] {
        guard snapshot.state.documentsOnDemand != nil else {
            return Dictionary(ids.compactMap { id in snapshot.state.documents[id].map { (id, $0) } }) { a, _ in a }
        }
        return try snapshot.stores[0].documents(ids: Array(Set(ids))).mapValues {
            DocumentInfo(path: $0.path, metadata: IndexState.decodeMetadata($0.metadata))
        }
    }

    /// Reads the texts of the given chunks (the results kept, not every candidate).
    func fillTexts(_ chunks: inout [ScoredChunk], from snapshot: Snapshot) throws {
        guard !chunks.isEmpty else { return }
        let ids = chunks.map(\.chunkID)
        let store = snapshot.stores[0]
        let (texts, metadata) = (try store.chunkTexts(ids: ids), try store.chunkMetadata(ids: ids))
        for i in chunks.indices {
            if let text = texts[chunks[i].chunkID] { chunks[i].text = text }
            chunks[i].metadata = IndexState.decodeMetadata(metadata[chunks[i].chunkID])
        }
    }

    /// A hit's metadata: its document's, with its chunk's location keys (page, section) added.
    static func merged(_ document: [String: String]?, _ chunk: [String: String]?) -> [String: String]? {
        guard let chunk, !chunk.isEmpty else { return document }
        return (document ?? [:]).merging(chunk) { _, fromChunk in fromChunk }
    }

    /// Exact fused scores of every chunk, no candidate generation: the oracle for tests.
    func exhaustiveSearch(encoded q: Embedding, options: SearchOptions) throws -> [SearchResult] {
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        return try withSnapshot { whole in
            let snapshot = try whole.holdingPostings(of: q.sparse?.ids ?? [])
            let ids = try snapshot.stores[0].chunkIDs()
            var scored = try score(snapshot, ids, query: q, weights: w)
            Fusion.fuse(&scored, weights: w, fusion: .weighted)
            scored.sort { $0.fused != $1.fused ? $0.fused > $1.fused : $0.chunkID < $1.chunkID }
            var kept = Array(scored.prefix(options.k))
            try fillTexts(&kept, from: snapshot)
            let documents = try documentInfos(kept.map(\.documentID), in: snapshot)
            return kept.enumerated().map { i, c in
                SearchResult(rank: i + 1, score: c.fused, dense: c.dense, sparse: c.sparse, colbert: c.colbert,
                             path: documents[c.documentID]?.path ?? "", metadata: nil, chunk: c.ordinal,
                             chunkID: c.chunkID, charRange: c.charStart ..< c.charEnd, text: c.text)
            }
        }
    }
}

// MARK: - Snapshots

/// What one search reads: a published state, and read transactions on two connections
/// that see the file as that state's commit left it.
struct Snapshot {
    var state: IndexState
    /// Rescoring splits the candidates over both, one thread each; the rest uses the first.
    let stores: [IndexStore]

    /// This snapshot with the posting lists of `tokens` in its state: read through its
    /// transaction when the state reads postings on demand (an index opened for searching),
    /// and kept in the state's cache for later queries.
    ///
    /// When the transaction sees another process's newer commit (`withSnapshot`'s fallback),
    /// its lists are cut to the chunks the state knows and not cached, so the state never
    /// mixes commits.
    func holdingPostings(of tokens: [Int32]) throws -> Snapshot {
        guard state.sparse.isOnDemand, !tokens.isEmpty else { return self }
        let store = stores[0]
        let sameCommit = try store.commitCount() == state.commit
        let known = state
        var next = self
        do {
            next.state.sparse = try state.sparse.withLists(for: tokens, cacheable: sameCommit,
                                                           keeping: sameCommit ? nil : { known.containsChunk($0) }) { missing in
                var records: [Int32: [UInt8]] = [:]
                try store.postings(tokenIDs: missing) { token, bytes in records[token] = Array(bytes) }
                return records
            }
        } catch let error as IndexError {
            throw StoreError.corrupt(path: store.path, detail: "\(error)")
        }
        return next
    }
}

extension IndexReader {
    /// Runs `body` on a snapshot: read transactions opened on two pooled connections, and
    /// the in-memory state of the commit they see (`SharedState.state(atCommit:)`). Rows
    /// of chunks the state does not know (later commits) are never asked for, and every
    /// chunk it knows still has its rows, so the search answers exactly as it would alone
    /// on that commit.
    ///
    /// Retried when the transactions see different commits or a commit already replaced
    /// in memory (writes landing between the BEGINs and the lookup; rare, and each try
    /// costs microseconds). A commit of another process is never in memory: then the
    /// newest state runs against the file as it is, as before snapshots existed: chunks
    /// the file lost drop out of the candidates, new ones are not found.
    func withSnapshot<T>(_ body: (Snapshot) throws -> T) throws -> T {
        return try pool.withConnections { stores in
            for _ in 0 ..< 4 {
                do {
                    return try stores[0].read {
                        try stores[1].read {
                            // The first read fixes each transaction's view of the file.
                            let commit = try stores[0].commitCount()
                            guard try stores[1].commitCount() == commit, let state = shared.state(atCommit: commit) else { throw SnapshotMoved() }
                            return try body(Snapshot(state: state, stores: stores))
                        }
                    }
                } catch is SnapshotMoved {
                    continue
                }
            }
            return try stores[0].read { try stores[1].read { try body(Snapshot(state: shared.current, stores: stores)) } }
        }
    }
}

/// An exact scan that found the image damaged or no longer the one opened (`cause`): the
/// search loads the graph (of `encoding`) and runs again.
struct ImageScanFailed: Error {
    let encoding: HNSWIndex.VectorEncoding
    let cause: any Error
}

/// A snapshot attempt whose transactions saw a commit no longer (or not) in memory.
private struct SnapshotMoved: Error {}

/// Read-only connections to the file. A search checks out two for its whole run (their
/// read transactions are its view of the file), so concurrent searches never share one;
/// the pool grows to twice the searches running at once and keeps a few idle.
final class ReaderPool: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var idle: [IndexStore]
    /// Idle connections kept (each holds SQLite's page cache, up to ~2 MB).
    private let keep = 8

    /// Opens the first two, so an unreadable file fails at open, not at the first search.
    init(path: String) throws {
        self.path = path
        idle = [try IndexStore(path: path, readOnly: true), try IndexStore(path: path, readOnly: true)]
    }

    func withConnections<T>(_ body: ([IndexStore]) throws -> T) throws -> T {
        var stores: [IndexStore] = lock.withLock {
            let n = min(2, idle.count)
            defer { idle.removeLast(n) }
            return Array(idle.suffix(n))
        }
        while stores.count < 2 { stores.append(try IndexStore(path: path, readOnly: true)) }
        defer {
            // One whose transaction did not end (a failed ROLLBACK) would hand its old view
            // to the next search: closed instead.
            let reusable = stores.filter { !$0.inTransaction }
            lock.withLock {
                idle += reusable
                if idle.count > keep { idle.removeFirst(idle.count - keep) }
            }
        }
        return try body(stores)
    }
}

/// Runs body(0), …, body(n − 1) on up to n threads and waits for all. The body may capture
/// pointers and inout state: callers give each index disjoint memory to write.
func concurrently(_ n: Int, _ body: (Int) -> Void) {
    guard n > 1 else { if n == 1 { body(0) }; return }
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let run = escaping
        DispatchQueue.concurrentPerform(iterations: n) { run($0) }
    }
}
