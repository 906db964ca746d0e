import Foundation
import M3Index
import M3Model
import M3Store

/// A document to add through the library: an id (a path, or any unique string), its
/// text, and optional metadata kept as JSON.
public struct DocumentInput: Sendable {
    public var id: String
    public var text: String
    public var metadata: [String: String]?

    public init(id: String, text: String, metadata: [String: String]? = nil) {
        self.id = id
        self.text = text
        self.metadata = metadata
    }
}

/// How `search` ranks.
public struct SearchOptions: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable { case hybrid, dense, sparse, colbert }
    public enum Fusion: String, Sendable, CaseIterable { case weighted, rrf }

    /// Results to return (documents, or chunks with `groupByDocument = false`).
    public var k: Int = 10
    /// Fusion weights for dense, sparse, ColBERT (used in hybrid mode). A weight of 0 skips that mode.
    /// nil: the index's default weights (`SearchIndex.defaultWeights`: tuned and saved, else 0.4/0.3/0.3).
    public var weights: FusionWeights?
    public var mode: Mode = .hybrid
    public var fusion: Fusion = .weighted
    /// Candidates taken from HNSW and from the sparse index before exact rescoring.
    public var candidates: Int = 100
    /// One result per document (its best chunk); false: one result per chunk.
    public var groupByDocument = true
    /// HNSW search breadth; nil: max(64, candidates).
    public var efSearch: Int?

    public init(k: Int = 10, weights: FusionWeights? = nil, mode: Mode = .hybrid, fusion: Fusion = .weighted,
                candidates: Int = 100, groupByDocument: Bool = true, efSearch: Int? = nil) {
        self.k = k
        self.weights = weights
        self.mode = mode
        self.fusion = fusion
        self.candidates = candidates
        self.groupByDocument = groupByDocument
        self.efSearch = efSearch
    }

    /// The weights actually applied: the mode's own weight alone outside hybrid mode, and
    /// `indexDefault` in hybrid mode when no weights were given.
    func effectiveWeights(indexDefault: FusionWeights) -> FusionWeights {
        switch mode {
        case .hybrid: return weights ?? indexDefault
        case .dense: return FusionWeights(dense: 1, sparse: 0, colbert: 0)
        case .sparse: return FusionWeights(dense: 0, sparse: 1, colbert: 0)
        case .colbert: return FusionWeights(dense: 0, sparse: 0, colbert: 1)
        }
    }
}

/// One ranked result.
public struct SearchResult: Sendable, Equatable {
    public var rank: Int
    /// The fused score (weighted: Σ wᵢ·sᵢ / Σ wᵢ; rrf: Σ wᵢ / (60 + rankᵢ)).
    public var score: Float
    /// Each mode's exact score; nil when its weight is 0 (not computed).
    public var dense: Float?
    public var sparse: Float?
    public var colbert: Float?
    /// The document's path (or the id given when it was added).
    public var path: String
    public var metadata: [String: String]?
    public var chunk: Int
    public var chunkID: Int64
    /// Character range (Unicode scalars) of the chunk in the document text.
    public var charRange: Range<Int>
    public var text: String
}

/// What a search did: candidate counts and time per stage (for `--explain`).
public struct SearchReport: Sendable {
    public var results: [SearchResult]
    public var denseCandidates = 0
    public var sparseCandidates = 0
    public var candidates = 0
    public var encodeSeconds = 0.0
    public var candidateSeconds = 0.0
    public var scoreSeconds = 0.0
    public var fuseSeconds = 0.0

    public init(results: [SearchResult]) { self.results = results }
}

/// What the search engine can throw besides model and store errors.
public enum SearchError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidQuery(String)
    case invalidOptions(String)
    case emptyIndex(String)

    public var description: String {
        switch self {
        case .invalidQuery(let s): return "Invalid query: \(s)"
        case .invalidOptions(let s): return "Invalid search options: \(s)"
        case .emptyIndex(let path): return "The index \(path) holds no documents yet. Add some with `m3search index <folders> --index \(path)`."
        }
    }
}

/// An m3search index: one SQLite file with the documents, their chunks and vectors, the
/// HNSW graph and the sparse postings, plus the model that encodes queries.
///
/// ```swift
/// let model = try BGEM3(folder: BGEM3.locate())
/// let index = try SearchIndex(path: "notes.m3index", model: model)
/// try index.add([DocumentInput(id: "a.md", text: "BGE-M3 is multilingual.")])
/// for r in try index.search("multilingual embeddings").results { print(r.rank, r.path, r.score) }
/// ```
/// One writer and any number of concurrent searches: searches run under a shared lock
/// and only wait for the short moment a write changes the in-memory graph and postings.
public final class SearchIndex: @unchecked Sendable {
    public let path: String
    public let model: BGEM3
    public let settings: IndexSettings
    /// How this index stores ColBERT rows and dense vectors, and which ColBERT rows it keeps
    /// (from `settings`, fixed at creation).
    public let colbertStorage: ColBERTStorage
    public let denseStorage: DenseStorage
    public let colbertPruning: ColBERTPruning

    /// Storage of new indexes when the caller names none, the best trade-off measured on
    /// 5,000 full-size-model chunks (README "Index size and storage", BENCHMARKS.md "Storage"):
    /// ColBERT pq16 (64 bytes per row, 32× smaller than float16, hybrid top-10 agreement 0.999)
    /// and int8 dense (1,028 bytes, agreement 1.000). pq16 needs a dimension divisible by 16;
    /// other models get int8 ColBERT.
    public static func defaultColBERTStorage(dimension: Int) -> ColBERTStorage {
        let pq16 = ColBERTStorage.productQuantized(dimensionsPerCode: 16)
        return pq16.unsupportedReason(dimension: dimension) == nil ? pq16 : .int8
    }
    public static let defaultDenseStorage: DenseStorage = .int8

    let store: IndexStore          // the writer's connection
    let reader: IndexStore         // searches' connection (WAL: sees committed state)
    let readerLock = NSLock()
    /// A second read connection: rescoring splits the candidates over both, one thread each.
    let scoringReader: IndexStore
    let scoringReaderLock = NSLock()
    let writeLock = NSLock()       // one writer at a time
    let writeSession = WriteSession()  // the cross-process writer lock (SearchIndex+Lock)
    let stateLock = ReadWriteLock()
    var hnsw: HNSWIndex
    var sparse: SparseIndex
    /// The ColBERT product quantiser (PQ storage only): trained by the write that brings the
    /// index to `codebookMinimumRows` ColBERT rows, then fixed; nil before that.
    var colbertCodebook: ProductQuantizer?
    /// ColBERT rows a PQ index waits for before training its codebook (k-means on fewer rows
    /// than a few per centroid learns the first documents, not the corpus). Until then rows
    /// are stored as float16 and scored exactly.
    package var codebookMinimumRows = 4_096
    /// How the ColBERT rows in the file are stored now: the chosen storage, except float16
    /// while a PQ index waits for enough rows to train its codebook. Read under `stateLock`.
    var colbertRowStorage: ColBERTStorage {
        colbertStorage.needsCodebook && colbertCodebook == nil ? .float16 : colbertStorage
    }
    /// document id → (path, metadata), for results.
    var documentInfo: [Int64: (path: String, metadata: [String: String]?)] = [:]
    /// Weights saved in the file (`m3search tune --save`); nil: the built-in 0.4/0.3/0.3.
    var savedWeights: FusionWeights?

    /// Opens the index at `path`, creating it when absent (with `maxLength`/`overlap`).
    /// Throws `StoreError.incompatible` when it was built with another model or settings.
    /// HNSW's M and efConstruction are fixed at creation too (defaults 16 and 200), and so are
    /// the storage choices: nil takes the defaults for a new index and the recorded choice for
    /// an existing one; a choice that differs from an existing index's throws
    /// `StoreError.incompatible` (its stored vectors cannot change form).
    public init(path: String, model: BGEM3, create: Bool = true, maxLength: Int = 512, overlap: Int = 64,
                pooling: Pooling = .cls, normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200,
                colbertStorage: ColBERTStorage? = nil, denseStorage: DenseStorage? = nil,
                colbertPruning: ColBERTPruning? = nil, readOnly: Bool = false) throws {
        self.path = path
        self.model = model
        let dimension = model.config.hiddenSize
        if let why = colbertStorage?.unsupportedReason(dimension: dimension) {
            throw SearchError.invalidOptions(why)
        }
        let wanted = IndexSettings(modelID: model.identity, dimension: dimension, maxLength: maxLength,
                                   overlap: overlap, pooling: pooling.rawValue, normalize: normalize,
                                   hnswM: hnswM, hnswEfConstruction: hnswEfConstruction,
                                   colbertStorage: (colbertStorage ?? Self.defaultColBERTStorage(dimension: dimension)).description,
                                   denseStorage: (denseStorage ?? Self.defaultDenseStorage).rawValue,
                                   colbertPrune: (colbertPruning ?? .none).description)
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && (!create || readOnly) { throw StoreError.missing(path: path) }
        if !exists {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        }
        store = try IndexStore(path: path, readOnly: readOnly, createWith: create ? wanted : nil)
        let stored = try store.settings()
        if stored.modelID != wanted.modelID || stored.dimension != wanted.dimension {
            throw StoreError.incompatible(path: path, detail: stored.firstDifference(from: wanted) ?? "model differs")
        }
        // Chunking, pooling and normalisation come from the file: an existing index keeps
        // the settings it was built with, whatever the caller passed. Storage choices asked
        // for explicitly must match, since nothing can convert the stored vectors.
        let asked: [(String, String?, String)] = [
            ("--colbert-storage", colbertStorage?.description, stored.colbertStorage),
            ("--dense-storage", denseStorage?.rawValue, stored.denseStorage),
            ("--colbert-prune", colbertPruning?.description, stored.colbertPrune)]
        for (option, value, recorded) in asked {
            if let value, value != recorded {
                throw StoreError.incompatible(path: path, detail: "it was created with \(option) \(recorded), not \(value); "
                    + "storage is fixed when an index is created: omit \(option) to use this index, or build a new one")
            }
        }
        guard let cs = ColBERTStorage(stored.colbertStorage), let ds = DenseStorage(rawValue: stored.denseStorage),
              let cp = ColBERTPruning(stored.colbertPrune) else {
            throw StoreError.corrupt(path: path, detail: "unknown storage in settings (ColBERT \(stored.colbertStorage), dense \(stored.denseStorage), pruning \(stored.colbertPrune)); a newer m3search wrote it")
        }
        settings = stored
        self.colbertStorage = cs
        self.denseStorage = ds
        self.colbertPruning = cp
        reader = try IndexStore(path: path, readOnly: true)
        scoringReader = try IndexStore(path: path, readOnly: true)
        writeSession.loadedDataVersion = try store.db.scalarInt("PRAGMA data_version") ?? 0
        (hnsw, sparse, documentInfo) = try Self.loadState(store, settings: stored)
        savedWeights = try Self.loadDefaultWeights(store)
        colbertCodebook = try Self.loadCodebook(store, dimension: stored.dimension)
    }

    /// The ColBERT product quantiser stored in the index, if any.
    static func loadCodebook(_ store: IndexStore, dimension: Int) throws -> ProductQuantizer? {
        guard let data = try store.codebook(name: "colbert") else { return nil }
        do {
            let pq = try ProductQuantizer(serialized: Array(data))
            guard pq.dimension == dimension else { throw IndexError.dimensionMismatch(expected: dimension, actual: pq.dimension) }
            return pq
        } catch {
            throw StoreError.corrupt(path: store.path, detail: "ColBERT codebook: \(error)")
        }
    }

    /// Rebuilds the in-memory graph and postings from the file (never re-running HNSW
    /// construction), all from one snapshot: a read transaction, so a writer committing
    /// meanwhile cannot pair one commit's graph with another's chunks.
    static func loadState(_ store: IndexStore, settings: IndexSettings) throws -> (HNSWIndex, SparseIndex, [Int64: (path: String, metadata: [String: String]?)]) {
        try store.db.transaction(immediate: false) { try loadSnapshot(store, settings: settings) }
    }

    /// `loadState` inside the caller's transaction; damage found by the graph and posting
    /// decoders is reported as `StoreError.corrupt`, like the store's own.
    static func loadSnapshot(_ store: IndexStore, settings: IndexSettings) throws -> (HNSWIndex, SparseIndex, [Int64: (path: String, metadata: [String: String]?)]) {
        do { return try decodeSnapshot(store, settings: settings) } catch let error as IndexError {
            throw StoreError.corrupt(path: store.path, detail: "\(error)")
        }
    }

    private static func decodeSnapshot(_ store: IndexStore, settings: IndexSettings) throws -> (HNSWIndex, SparseIndex, [Int64: (path: String, metadata: [String: String]?)]) {
        var info: [Int64: (path: String, metadata: [String: String]?)] = [:]
        for d in try store.documents() { info[d.id] = (d.path, decodeMetadata(d.metadata)) }

        var sparseLoader = SparseIndex.Loader()
        try store.forEachPosting { token, bytes in try sparseLoader.add(token: token, bytes: Array(bytes)) }
        let sparse = sparseLoader.finish()

        let hnsw: HNSWIndex
        if let meta = try store.meta("hnsw_header"), let header = Data(base64Encoded: meta) {
            var dense: [Int64: [Float]] = [:]
            try store.forEachChunkVectors { id, _, d, _ in
                guard let v = VectorCoding.decodeDense(d, dimension: settings.dimension,
                                                       storage: DenseStorage(rawValue: settings.denseStorage) ?? .f32,
                                                       unit: settings.normalize) else {
                    throw StoreError.corrupt(path: store.path, detail: "dense vector of chunk \(id) has \(d.count) bytes")
                }
                dense[id] = v
            }
            var loader = try HNSWIndex.Loader(meta: Array(header))
            var failure: Error?
            try store.forEachHNSWNode { slot, bytes in
                guard failure == nil else { return }
                guard bytes.count >= 8 else { failure = StoreError.corrupt(path: store.path, detail: "HNSW node \(slot) is \(bytes.count) bytes"); return }
                let record = HNSWNodeRecord(slot: slot, id: Self.recordID(bytes), bytes: Array(bytes[8...]))
                let vector = record.state == .live ? (dense[record.id] ?? []) : []
                do { try loader.add(record, vector: vector) } catch { failure = error }
            }
            if let failure { throw StoreError.corrupt(path: store.path, detail: "\(failure)") }
            hnsw = try loader.finish()
        } else {
            hnsw = try HNSWIndex(parameters: .init(dimension: settings.dimension, m: settings.hnswM,
                                                   efConstruction: settings.hnswEfConstruction))
        }
        return (hnsw, sparse, info)
    }

    static func recordID(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        // Node records are stored with their chunk id in front (see persist()).
        bytes.count >= 8 ? Int64(littleEndian: bytes.loadUnaligned(as: Int64.self)) : 0
    }

    static func decodeMetadata(_ json: String?) -> [String: String]? {
        guard let json, let data = json.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: data)
    }

    // MARK: - Counts

    public var documentCount: Int { stateLock.read { documentInfo.count } }
    public var chunkCount: Int { stateLock.read { hnsw.count } }
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

/// A readers–writer lock over pthread_rwlock.
final class ReadWriteLock: @unchecked Sendable {
    private var lock = pthread_rwlock_t()
    init() { pthread_rwlock_init(&lock, nil) }
    deinit { pthread_rwlock_destroy(&lock) }
    func read<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }
    func write<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }
}
