import Foundation
import M3Index
import M3Model
import M3Store

/// How `SearchIndex(path:model:options:)` opens or creates an index.
///
/// ```swift
/// let index = try SearchIndex(path: "notes.m3index", model: model)                          // create when absent
/// let reader = try SearchIndex(path: "notes.m3index", model: model, options: .existing(readOnly: true))
/// let small = try SearchIndex(path: "small.m3index", model: model,
///                             options: IndexOptions(colbertStorage: .int8, denseStorage: .f16))
/// ```
///
/// The creation settings (chunking, pooling, normalisation, prefixes, HNSW shape, storage) are fixed
/// when the index is created: an existing index keeps its own, except that a storage
/// choice given explicitly must match it (nothing can convert stored vectors).
public struct IndexOptions: Sendable, Equatable {
    /// Create the index when the file does not exist; false: throw `.notFound` instead.
    public var create = true
    /// Open for searching only: no write is possible and no writer lock is taken.
    public var readOnly = false
    /// Tokens per chunk, `<s>` and `</s>` included.
    public var maxLength = 512
    /// Tokens shared by consecutive chunks.
    public var overlap = 64
    /// Dense pooling, and whether dense and ColBERT vectors are L2-normalised.
    public var pooling: Pooling = .cls
    public var normalize = true
    /// Texts put before every query and every passage at encode time (e5-style models
    /// expect "query: " and "passage: "; BGE-M3 none). Chunk ranges refer to the
    /// document's own text; the passage prefix's tokens count against `maxLength`.
    public var queryPrefix = ""
    public var passagePrefix = ""
    /// HNSW links per node (M) and construction breadth (efConstruction).
    public var hnswM = 16
    public var hnswEfConstruction = 200
    /// Storage of ColBERT rows, dense vectors, and which ColBERT rows are kept. nil: the
    /// defaults for a new index (`SearchIndex.defaultColBERTStorage(dimension:)`,
    /// `SearchIndex.defaultDenseStorage`, no pruning) and the recorded choice for an existing one.
    public var colbertStorage: ColBERTStorage?
    public var denseStorage: DenseStorage?
    public var colbertPruning: ColBERTPruning?
    /// Where searches find their dense candidates: the HNSW graph (the default), or an exact
    /// scan of every dense vector per search, with no graph loaded (`DenseCandidates`).
    public var denseCandidates: DenseCandidates = .graph
    /// How the in-memory graph holds the vectors; nil: `IndexSettings.graphEncoding` (int8
    /// codes for int8 dense storage). Benchmarks and tests force float32 to compare.
    package var graphEncoding: HNSWIndex.VectorEncoding?
    /// The precision a new index records as its documents' (`import`: the exporting
    /// index's); nil: the model's.
    package var encodedPrecision: Precision?

    public init(create: Bool = true, readOnly: Bool = false, maxLength: Int = 512, overlap: Int = 64,
                pooling: Pooling = .cls, normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200,
                colbertStorage: ColBERTStorage? = nil, denseStorage: DenseStorage? = nil, colbertPruning: ColBERTPruning? = nil,
                queryPrefix: String = "", passagePrefix: String = "") {
        self.create = create
        self.readOnly = readOnly
        self.maxLength = maxLength
        self.overlap = overlap
        self.pooling = pooling
        self.normalize = normalize
        self.hnswM = hnswM
        self.hnswEfConstruction = hnswEfConstruction
        self.colbertStorage = colbertStorage
        self.denseStorage = denseStorage
        self.colbertPruning = colbertPruning
        self.queryPrefix = queryPrefix
        self.passagePrefix = passagePrefix
    }

    /// An existing index, never created (`.notFound` when absent).
    public static func existing(readOnly: Bool = false) -> IndexOptions { IndexOptions(create: false, readOnly: readOnly) }
}

/// Where an open index's searches find their dense candidates.
public enum DenseCandidates: String, Sendable, Equatable, CaseIterable {
    /// The HNSW graph, loaded at open (from its image when current): approximate top n, in
    /// about a millisecond per search. For anything that searches more than once.
    case graph
    /// No graph: each search scores every dense vector exactly, streamed from the graph's
    /// image in the file (about 1 KB per chunk of int8 storage). The open skips the graph
    /// (135 ms at 100k chunks, 1.6 s at 1M) and the dense top n is exact, but every search
    /// reads all vectors: what `m3search query` uses for its single query. Only for an index
    /// opened read-only; an index without a current image (it is written at checkpoints),
    /// or with unnormalised vectors, loads the graph instead (`IndexOpenTimings.graphSource`
    /// says which).
    case exactScan
}

/// The settings an index is built with, fixed at creation. An index refuses to open with
/// another model, because its vectors would not be comparable with the new query vectors.
///
/// Stored in the file as the text record `StoredSettings` (the same JSON every m3search
/// wrote): this type is its typed reading.
public struct IndexSettings: Equatable, Sendable, Codable {
    /// Identity of the model (hash of config and weights), see `BGEM3.identity`.
    public var modelID: String
    public var dimension: Int
    public var maxLength: Int
    public var overlap: Int
    public var pooling: Pooling
    public var normalize: Bool
    public var hnswM: Int
    public var hnswEfConstruction: Int
    public var colbertStorage: ColBERTStorage
    public var denseStorage: DenseStorage
    public var colbertPruning: ColBERTPruning
    /// Texts put before every query and every passage at encode time ("" when none).
    public var queryPrefix: String
    public var passagePrefix: String
    /// The precision whose encoder wrote the documents; nil for indexes older than the
    /// record. Queries at another precision still work (`SearchIndex.notes` says so).
    public var precision: Precision?

    public init(modelID: String, dimension: Int, maxLength: Int = 512, overlap: Int = 64, pooling: Pooling = .cls,
                normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200, colbertStorage: ColBERTStorage = .float16,
                denseStorage: DenseStorage = .f32, colbertPruning: ColBERTPruning = .none, queryPrefix: String = "",
                passagePrefix: String = "", precision: Precision? = nil) {
        self.modelID = modelID
        self.dimension = dimension
        self.maxLength = maxLength
        self.overlap = overlap
        self.pooling = pooling
        self.normalize = normalize
        self.hnswM = hnswM
        self.hnswEfConstruction = hnswEfConstruction
        self.colbertStorage = colbertStorage
        self.denseStorage = denseStorage
        self.colbertPruning = colbertPruning
        self.queryPrefix = queryPrefix
        self.passagePrefix = passagePrefix
        self.precision = precision
    }

    /// Reads the file's record. Throws `StoreError.corrupt` naming a value this m3search
    /// does not know (a newer one wrote it).
    init(stored s: StoredSettings, path: String) throws {
        guard let pooling = Pooling(rawValue: s.pooling), let cs = ColBERTStorage(s.colbertStorage),
              let ds = DenseStorage(s.denseStorage), let cp = ColBERTPruning(s.colbertPrune) else {
            throw StoreError.corrupt(path: path, detail: "unknown values in settings (pooling \(s.pooling), ColBERT \(s.colbertStorage), "
                + "dense \(s.denseStorage), pruning \(s.colbertPrune)); a newer m3search wrote it")
        }
        let precision = try s.precision.map { text in
            guard let p = Precision(text) else {
                throw StoreError.corrupt(path: path, detail: "unknown precision \(text) in settings; a newer m3search wrote it")
            }
            return p
        }
        self.init(modelID: s.modelID, dimension: s.dimension, maxLength: s.maxLength, overlap: s.overlap, pooling: pooling,
                  normalize: s.normalize, hnswM: s.hnswM, hnswEfConstruction: s.hnswEfConstruction,
                  colbertStorage: cs, denseStorage: ds, colbertPruning: cp, queryPrefix: s.queryPrefix,
                  passagePrefix: s.passagePrefix, precision: precision)
    }

    /// The record the file holds.
    var stored: StoredSettings {
        StoredSettings(modelID: modelID, dimension: dimension, maxLength: maxLength, overlap: overlap, pooling: pooling.rawValue,
                       normalize: normalize, hnswM: hnswM, hnswEfConstruction: hnswEfConstruction,
                       colbertStorage: colbertStorage.description, denseStorage: denseStorage.rawValue,
                       colbertPrune: colbertPruning.description, queryPrefix: queryPrefix, passagePrefix: passagePrefix,
                       precision: precision?.description)
    }

    /// The file's JSON (export headers, `m3search info --json`): the record's keys and texts.
    public func encode(to encoder: Encoder) throws { try stored.encode(to: encoder) }

    /// Reads the file's JSON; records written before the storage keys existed read as
    /// float16 ColBERT, float32 dense and no pruning; before the prefixes, with none.
    public init(from decoder: Decoder) throws {
        let s = try StoredSettings(from: decoder)
        do { try self.init(stored: s, path: "settings") } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    /// The first setting that differs, described for an error message; nil when equal.
    public func firstDifference(from other: IndexSettings) -> String? {
        if modelID != other.modelID { return "model \(modelID.prefix(16))… vs \(other.modelID.prefix(16))…" }
        if dimension != other.dimension { return "dimension \(dimension) vs \(other.dimension)" }
        if maxLength != other.maxLength { return "max length \(maxLength) vs \(other.maxLength)" }
        if overlap != other.overlap { return "overlap \(overlap) vs \(other.overlap)" }
        if pooling != other.pooling { return "pooling \(pooling.rawValue) vs \(other.pooling.rawValue)" }
        if normalize != other.normalize { return "normalize \(normalize) vs \(other.normalize)" }
        if colbertStorage != other.colbertStorage { return "ColBERT storage \(colbertStorage) vs \(other.colbertStorage)" }
        if denseStorage != other.denseStorage { return "dense storage \(denseStorage) vs \(other.denseStorage)" }
        if colbertPruning != other.colbertPruning { return "ColBERT pruning \(colbertPruning) vs \(other.colbertPruning)" }
        if queryPrefix != other.queryPrefix { return "query prefix \"\(queryPrefix)\" vs \"\(other.queryPrefix)\"" }
        if passagePrefix != other.passagePrefix { return "passage prefix \"\(passagePrefix)\" vs \"\(other.passagePrefix)\"" }
        return nil
    }

    /// How an open index's HNSW graph holds the vectors it traverses with. With int8 dense
    /// storage (unit vectors), the stored int8 codes themselves: a quarter of float32's
    /// memory, loaded without decoding; the graph's candidates are rescored exactly
    /// against the same codes (`IndexReader.graphSearch`), so the dense scores are those
    /// of the stored vectors either way. float32 otherwise.
    var graphEncoding: HNSWIndex.VectorEncoding { denseStorage == .int8 && normalize ? .int8 : .float32 }

    /// The storage of this index's vectors, without the codebook (see `ChunkCodec`).
    var codec: ChunkCodec {
        ChunkCodec(dimension: dimension, dense: denseStorage, colbert: colbertStorage, pruning: colbertPruning, unitDense: normalize)
    }

    /// A storage choice that contradicts the one an existing index was created with: the
    /// `underlying` cause of an `.incompatible` error, so that callers (the command line)
    /// can name the option in their own terms.
    public struct Mismatch: Error, CustomStringConvertible, Sendable, Equatable {
        public enum Setting: String, Sendable, CaseIterable {
            case colbertStorage = "ColBERT storage", denseStorage = "dense storage", colbertPruning = "ColBERT pruning"
            case pooling, normalize = "normalisation", queryPrefix = "query prefix", passagePrefix = "passage prefix"
        }
        public var path: String
        public var setting: Setting
        /// As recorded in the index, and as asked for.
        public var recorded: String
        public var requested: String

        package init(path: String, setting: Setting, recorded: String, requested: String) {
            self.path = path
            self.setting = setting
            self.recorded = recorded
            self.requested = requested
        }

        public var description: String {
            "\(path) was created with \(setting.rawValue) \(recorded), not \(requested); this setting is fixed when an index is "
                + "created: open it without that choice, or create a new index"
        }
    }
}
