import Foundation
import M3Index
import M3Model
import M3Store

/// An m3search index: one SQLite file with the documents, their chunks and vectors, the
/// HNSW graph and the sparse postings, plus the model that encodes queries.
///
/// ```swift
/// let model = try BGEM3(folder: BGEM3.locate())
/// let index = try SearchIndex(path: "notes.m3index", model: model)
/// try index.add([DocumentInput(id: "a.md", text: "BGE-M3 is multilingual.")])
/// for r in try index.search("multilingual embeddings").results { print(r.rank, r.path, r.score) }
/// ```
///
/// Every call throws `M3SearchError`. One writer and any number of concurrent searches: the
/// entry is built from a snapshot reader (`IndexReader`), a single writer (`IndexWriter`),
/// ingestion of texts and files (`Ingestion`) and evaluation (`CandidatePool`); each part
/// documents its lock story where it lives.
public final class SearchIndex: @unchecked Sendable {
    public let path: String
    public let model: BGEM3
    /// The settings the index was created with (read from the file).
    public let settings: IndexSettings
    /// Set when the index recorded the first-generation identity of this model (m3search
    /// before identity v2): what opening did about it. nil when it records `model.identity`.
    public let identityUpgrade: IdentityUpgrade?
    /// One-line remarks about how this index meets this model, for the caller to show once:
    /// a model precision other than the one that encoded the documents (queries still
    /// work, their vectors differ slightly), or a model with fewer positions than the
    /// index's chunk length (chunks are cut to the model's limit). Empty when none apply.
    public let notes: [String]
    /// Where opening this index spent its time (`m3search query --explain` prints it).
    public let openTimings: IndexOpenTimings

    /// An index created before identity v2 records a model identity that sampled the
    /// weights and ignored tokenizer.json (`BGEM3.matchIdentity(_:)` recognises it as
    /// `.legacy`). Such an index is accepted, and its record is upgraded to
    /// `model.identity` on the first writable open; from then on the strong identity
    /// protects it (and m3search releases before v2 refuse it as another model's).
    public enum IdentityUpgrade: Sendable, Equatable {
        /// Opening replaced the recorded identity with `model.identity` (once: the next open
        /// finds identity v2).
        case upgraded
        /// Opened read-only: accepted as it is, nothing written; the first writable open
        /// upgrades it.
        case pendingWritableOpen
    }

    let reader: IndexReader
    let writer: IndexWriter
    var ingestion: Ingestion { Ingestion(model: model, settings: settings, writer: writer) }

    /// Bytes a ColBERT row may take in a new index's default storage (issue 12: "≤ 300 bytes
    /// per token"). ColBERT rows are most of an index (one per token, against one dense
    /// vector per chunk), so this budget is what makes a large corpus fit: at BGE-M3's 1024
    /// dimensions it is 7× smaller than float16 (2,048 bytes) and 3.4× smaller than int8
    /// (1,028 bytes). `defaultColBERTStorage(dimension:)` picks the most faithful codec that
    /// fits it.
    public static let defaultColBERTRowBudget = 300

    /// Storage of new ColBERT rows when the caller names none: the most faithful compressed
    /// codec (float16 is the reference, never a default) whose row fits
    /// `defaultColBERTRowBudget` bytes at `dimension`:
    ///
    /// - `int8` when d + 4 bytes fit (d ≤ 296; the 16-d test model);
    /// - else product quantisation with the fewest values per code that divide d and fit:
    ///   `pq2` at 384-d (192 bytes; e5-small), `pq4` at 768-d and at 1024-d (256 bytes; BGE-M3);
    /// - else (no step fits) the smallest PQ row that divides d, and `int8` when none divides
    ///   (it holds every dimension).
    ///
    /// Measured on trained weights (BENCHMARKS.md "Storage on trained weights", `StorageCost`):
    /// on the e5-small fixture pq2 + int8 dense stays within 0.005 nDCG@10 of exact float16 /
    /// float32 storage in every mode `eval` reports (worst 0.0025), where pq4 lost 0.0039 and pq16 (the
    /// default before issue 12, 64 bytes) 0.039 in ColBERT mode. A PQ index stores float16 rows
    /// until it holds `codebookMinimumRows` rows and then trains its codebook (IndexWriter+Codebook).
    /// The settings record the codec chosen, so an index keeps it whatever later defaults are.
    public static func defaultColBERTStorage(dimension d: Int) -> ColBERTStorage {
        let budget = defaultColBERTRowBudget
        if ColBERTStorage.int8.bytesPerRow(dimension: d) <= budget { return .int8 }
        let steps = ColBERTStorage.productQuantizerSteps.filter { d % $0 == 0 }
        if let n = steps.first(where: { d / $0 <= budget }) { return .productQuantized(dimensionsPerCode: n) }
        if let n = steps.last { return .productQuantized(dimensionsPerCode: n) }
        return .int8
    }

    /// Storage of new dense vectors when the caller names none: int8 (1,028 bytes at 1024-d,
    /// one vector per chunk; no nDCG@10 loss on the trained fixture, `StorageCost`).
    public static let defaultDenseStorage: DenseStorage = .int8

    /// The fusion weights used when none are given: 0.4 / 0.3 / 0.3 (FlagEmbedding's
    /// example), unless `setDefaultWeights` saved others in the file.
    public static let builtInWeights = FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0.3)

    /// Opens the index at `path`, creating it when absent (unless `options.create` is false).
    ///
    /// An existing index keeps the settings it was created with, whatever `options` say,
    /// except that a storage choice given explicitly must match the recorded one.
    ///
    /// Throws `M3SearchError`: `.notFound` (no file and `create` false, or read-only),
    /// `.incompatible` (another model, or a storage choice that differs; `underlying` is an
    /// `IndexSettings.Mismatch` for the latter), `.notAnIndex`, `.newerFormat`, `.corrupt`,
    /// `.invalidArgument` (a storage the model's dimension cannot use, or `.exactScan` dense
    /// candidates on a writable open).
    public init(path: String, model: BGEM3, options: IndexOptions = IndexOptions()) throws {
        self.path = path
        self.model = model
        let start = DispatchTime.now()
        func since(_ t: DispatchTime) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9 }
        var timings = IndexOpenTimings()
        do {
            let (store, settings, upgrade) = try Self.open(path: path, model: model, options: options)
            timings.store = since(start)
            self.settings = settings
            identityUpgrade = upgrade
            notes = Self.openingNotes(path: path, settings: settings, model: model)
            let shared = SharedState(try IndexState.load(from: store, settings: settings,
                                                         graphEncoding: options.graphEncoding ?? settings.graphEncoding,
                                                         postingsOnDemand: true, scanImage: options.denseCandidates == .exactScan,
                                                         timings: &timings))
            let connecting = DispatchTime.now()
            writer = try IndexWriter(path: path, settings: settings, store: store, shared: shared)
            reader = try IndexReader(path: path, model: model, settings: settings, shared: shared)
            // Indexes written before file ids were canonical: merge a file's copies under
            // several spellings (IndexWriter+DocumentIDs).
            if !options.readOnly { try writer.canonicalizeDocumentIDs() }
            timings.connections = since(connecting)
            timings.total = since(start)
            openTimings = timings
        } catch {
            throw M3SearchError(error)
        }
    }

    /// Creates the file when needed and checks the recorded settings against the model and
    /// the options; returns the writer's connection, the settings the index has and what was
    /// done about a first-generation model identity.
    private static func open(path: String, model: BGEM3, options o: IndexOptions)
        throws -> (IndexStore, IndexSettings, IdentityUpgrade?) {
        let dimension = model.config.hiddenSize
        if o.denseCandidates == .exactScan && !o.readOnly {
            // Its state has no graph a write could update.
            throw M3SearchError.invalidArgument("Invalid index options: exact-scan dense candidates need a read-only open (readOnly: true)")
        }
        if let why = o.colbertStorage?.unsupportedReason(dimension: dimension) {
            throw M3SearchError.invalidArgument("Invalid search options: \(why)")
        }
        let wanted = IndexSettings(modelID: model.identity, dimension: dimension, maxLength: o.maxLength, overlap: o.overlap,
                                   pooling: o.pooling, normalize: o.normalize, hnswM: o.hnswM, hnswEfConstruction: o.hnswEfConstruction,
                                   colbertStorage: o.colbertStorage ?? defaultColBERTStorage(dimension: dimension),
                                   denseStorage: o.denseStorage ?? defaultDenseStorage, colbertPruning: o.colbertPruning ?? .none,
                                   queryPrefix: o.queryPrefix, passagePrefix: o.passagePrefix,
                                   precision: o.encodedPrecision ?? model.precision)
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && (!o.create || o.readOnly) { throw StoreError.missing(path: path) }
        if !exists {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        }
        let store = try IndexStore(path: path, readOnly: o.readOnly, createWith: o.create ? wanted.stored : nil)
        var stored = try IndexSettings(stored: try store.settings(), path: path)
        let upgrade = try acceptIdentity(of: &stored, model: model, store: store)
        if stored.dimension != wanted.dimension {
            throw StoreError.incompatible(path: path, detail: "dimension \(stored.dimension) vs \(wanted.dimension)")
        }
        // Chunking, pooling and normalisation come from the file: an existing index keeps
        // the settings it was built with. Storage choices asked for explicitly must match,
        // since nothing can convert the stored vectors.
        let asked: [(IndexSettings.Mismatch.Setting, String?, String)] = [
            (.colbertStorage, o.colbertStorage?.description, stored.colbertStorage.description),
            (.denseStorage, o.denseStorage?.description, stored.denseStorage.description),
            (.colbertPruning, o.colbertPruning?.description, stored.colbertPruning.description)]
        for (setting, value, recorded) in asked {
            if let value, value != recorded {
                throw IndexSettings.Mismatch(path: path, setting: setting, recorded: recorded, requested: value)
            }
        }
        return (store, stored, upgrade)
    }

    /// What `notes` says about `settings` opened with `model`.
    static func openingNotes(path: String, settings: IndexSettings, model: BGEM3) -> [String] {
        var notes: [String] = []
        if let recorded = settings.precision, recorded != model.precision {
            notes.append("\(path) was encoded at precision \(recorded); queries are encoded at \(model.precision), "
                         + "so their vectors differ slightly from the documents' (search still works)")
        }
        let limit = model.config.maxSequenceLength
        if settings.maxLength > limit {
            notes.append("the model takes at most \(limit) tokens (max_position_embeddings \(model.config.maxPositions)), "
                         + "fewer than the index's chunk length \(settings.maxLength): documents are chunked to \(limit) tokens")
        }
        return notes
    }

    /// Compares the recorded model identity with `model`'s (`BGEM3.matchIdentity`): the same
    /// identity passes; this model's first-generation identity is accepted and, on a writable
    /// store, replaced by `model.identity` in one transaction (`settings` then records it);
    /// anything else is another model: `StoreError.incompatible`.
    private static func acceptIdentity(of settings: inout IndexSettings, model: BGEM3, store: IndexStore) throws -> IdentityUpgrade? {
        let recorded = settings.modelID
        switch model.matchIdentity(recorded) {
        case .same:
            return nil
        case .legacy where store.readOnly:
            return .pendingWritableOpen
        case .legacy:
            let replaced = try store.write { try store.replaceModelID(recorded, with: model.identity) }
            // Not replaced: another process changed the record meanwhile; accept only its upgrade.
            if !replaced, try store.settings().modelID != model.identity {
                throw StoreError.incompatible(path: store.path, detail: "model identity changed while the index was opened")
            }
            settings.modelID = model.identity
            return replaced ? .upgraded : nil
        case .different:
            throw StoreError.incompatible(path: store.path,
                                          detail: "model \(recorded.prefix(16))… vs \(model.identity.prefix(16))…")
        }
    }

    // MARK: - Documents

    /// Adds documents, replacing any with the same id. Encoding happens before the writer
    /// runs; the store and the in-memory indexes change in one transaction.
    ///
    /// Throws `M3SearchError`: `.invalidArgument` (metadata that cannot be encoded), `.locked`
    /// (another process writes the index), `.readOnly`, `.diskFull` (nothing was kept).
    public func add(_ documents: [DocumentInput]) throws {
        try M3SearchError.boundary {
            let ingestion = ingestion
            try writer.add(try documents.map { try ingestion.prepare($0) })
        }
    }

    /// Removes documents by id (path). Returns how many were present.
    @discardableResult
    public func remove(_ ids: [String]) throws -> Int {
        try M3SearchError.boundary { try writer.remove(ids) }
    }

    /// Indexes files and folders incrementally: new and changed files are encoded,
    /// unchanged ones skipped without encoding, and files deleted under a given folder
    /// removed. Work is committed in batches, so an interrupted run keeps what it finished
    /// and the next run resumes. Document ids are the files' canonical absolute paths
    /// (realpath: symlinks, `.` and `..` resolved), so a file reached through different
    /// spellings (`dir`, `./dir`, `/abs/dir`, a symlinked parent) is one document. Ids given
    /// to `add` are kept as given.
    ///
    /// `shouldStop` is asked before each file: when it returns true the run commits what it
    /// has encoded, stops, and returns a summary with `interrupted` set (a later run with
    /// the same roots resumes, finding the committed files unchanged). The command line
    /// answers Ctrl-C this way.
    ///
    /// Throws `M3SearchError`: `.notFound` for a root that does not exist, `.locked`, and
    /// the model's and store's errors; files that cannot be read are counted in the summary.
    public func indexFiles(_ roots: [String], selection: FileSelection = FileSelection(),
                           progress: ((IndexProgress) -> Void)? = nil,
                           shouldStop: (() -> Bool)? = nil) throws -> IndexSummary {
        try M3SearchError.boundary {
            try ingestion.indexFiles(roots, selection: selection, shouldStop: shouldStop, progress: progress)
        }
    }

    /// Indexes the documents of JSONL files (BEIR corpus.jsonl or `{"id", "title", "text",
    /// "metadata"}` lines; see `Ingestion.indexJSONL`): ids as given, unchanged documents
    /// not encoded again, invalid lines reported in the summary's warnings and skipped.
    ///
    /// Throws `M3SearchError`: `.notFound` for a missing file, `.locked`, and the model's
    /// and store's errors.
    public func indexJSONL(_ files: [String], batchDocuments: Int = 16,
                           progress: ((IndexProgress) -> Void)? = nil) throws -> IndexSummary {
        try M3SearchError.boundary { try ingestion.indexJSONL(files, batchDocuments: batchDocuments, progress: progress) }
    }

    // MARK: - Search

    /// Searches the index: encode the query, gather candidates (HNSW top-N ∪ exact sparse
    /// top-N), score every candidate exactly in each mode, fuse, and return the top k.
    ///
    /// Throws `M3SearchError`: `.invalidArgument` for an empty query, k outside 1…10000, a
    /// non-positive candidate count or invalid weights; `.emptyIndex` when nothing is
    /// indexed; `.corrupt` when a stored row is damaged.
    public func search(_ query: String, options: SearchOptions = SearchOptions()) throws -> SearchReport {
        try M3SearchError.boundary { try reader.search(query, options: options) }
    }

    /// The search pipeline on an already encoded query (benchmarks time it without the encoder).
    package func search(encoded q: Embedding, options: SearchOptions) throws -> SearchReport {
        try M3SearchError.boundary { try reader.search(encoded: q, options: options) }
    }

    /// Exact fused scores of every chunk, no candidate generation: the oracle for tests.
    package func exhaustiveSearch(encoded q: Embedding, options: SearchOptions) throws -> [SearchResult] {
        try M3SearchError.boundary { try reader.exhaustiveSearch(encoded: q, options: options) }
    }

    // MARK: - Counts and weights

    public var documentCount: Int { reader.shared.read { $0.documentCount } }
    public var chunkCount: Int { reader.shared.read { $0.chunkCount } }

    /// The weights a hybrid search uses when `SearchOptions.weights` is nil: those saved in
    /// the index (`setDefaultWeights`, `m3search tune --save`), else `builtInWeights`.
    public var defaultWeights: FusionWeights { reader.defaultWeights }

    /// Whether `defaultWeights` come from the file rather than `builtInWeights`.
    public var hasSavedWeights: Bool { reader.shared.read { $0.savedWeights != nil } }

    /// Saves `weights` in the index as its default weights; nil removes them (back to
    /// `builtInWeights`). Throws `M3SearchError.invalidArgument` for negative, non-finite or
    /// all-zero weights, and the store's errors (e.g. `.readOnly`).
    public func setDefaultWeights(_ weights: FusionWeights?) throws {
        try M3SearchError.boundary {
            if let w = weights {
                guard [w.dense, w.sparse, w.colbert].allSatisfy({ $0.isFinite && $0 >= 0 }), w.dense + w.sparse + w.colbert > 0 else {
                    throw M3SearchError.invalidArgument("Invalid search options: weights must be non-negative and not all zero (got \(w))")
                }
            }
            try writer.setDefaultWeights(weights)
        }
    }

    // MARK: - Writing across processes

    /// Takes the index's writer lock for this SearchIndex (a no-op when it already holds
    /// it). Writes take it themselves without waiting; call this first to wait instead, or
    /// to fail before any work is done. Searches never need it.
    ///
    /// ```swift
    /// try index.lockForWriting(wait: true) { holder in print("waiting for \(holder?.description ?? "another writer")") }
    /// ```
    /// - Throws: `M3SearchError.locked` naming the holder's PID, command and start time (when
    ///   not waiting; `underlying` is `StoreError.locked`), `.readOnly` when the lock file
    ///   cannot be created.
    public func lockForWriting(wait: Bool = false, onWait: ((WriterLock.Holder?) -> Void)? = nil) throws {
        try M3SearchError.boundary { try writer.lockForWriting(wait: wait, onWait: onWait) }
    }

    /// Lets other processes write the index again; the next write takes the lock anew
    /// (and reloads the graph and postings if another writer changed the file meanwhile).
    public func releaseWriteLock() {
        writer.releaseWriteLock()
    }

    /// Folds the write-ahead log into the index file and truncates it, so the file alone
    /// holds every committed write (call it when closing a long-running writer, such as
    /// the HTTP server at shutdown). Waits for a write in progress to finish first.
    ///
    /// Throws `M3SearchError` when SQLite cannot checkpoint (a read-only index has no log to fold).
    public func checkpoint() throws {
        try M3SearchError.boundary { try writer.checkpoint() }
    }

    // MARK: - Test hooks

    /// The writer's connection.
    var store: IndexStore { writer.store }
    var hnsw: HNSWIndex { reader.shared.read { $0.hnsw } }
    /// Bytes the in-memory graph holds (`HNSWIndex.memoryBytes`), for benchmarks.
    package var graphMemoryBytes: Int { reader.shared.read { $0.hnsw.memoryBytes } }
    /// The commit count of the state new searches read (tests pair results with commits).
    package var publishedCommit: Int64 { reader.shared.current.commit }
    /// What a write pays for snapshots before its own work, in seconds (benchmarks): copying
    /// the graph, then the first change to each copy-on-write table of the copy (document
    /// table, sparse postings map, chunk → tokens map), which copies the whole table.
    package func snapshotCopySeconds() -> (graph: Double, tables: Double) {
        let current = reader.shared.current
        let t0 = Date()
        var next = current.writable()
        let t1 = Date()
        next.documents[Int64.min] = DocumentInfo(path: "", metadata: nil)
        if !next.sparse.isOnDemand { _ = try? next.sparse.add(document: Int64.min, terms: [(token: Int32.max, weight: 1)]) }
        return (t1.timeIntervalSince(t0), Date().timeIntervalSince(t1))
    }
    /// Every posting list of the published state (read from the file when it loads them on demand).
    var sparse: SparseIndex {
        get throws {
            let state = reader.shared.current
            guard state.sparse.isOnDemand else { return state.sparse }
            return try writer.exclusively { try store.read { try IndexState.loadPostings(store) } }
        }
    }
    var colbertCodebook: ProductQuantizer? { reader.shared.read { $0.codec.codebook } }
    /// ColBERT rows a PQ index waits for before training its codebook.
    package var codebookMinimumRows: Int {
        get { writer.codebookMinimumRows }
        set { writer.codebookMinimumRows = newValue }
    }
}
