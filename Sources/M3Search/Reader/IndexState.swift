import Foundation
import M3Index
import M3Model
import M3Store

/// What results show of a document: its id (path) and metadata.
struct DocumentInfo: Sendable {
    var path: String
    var metadata: [String: String]?
}

/// The in-memory half of an open index, rebuilt from one snapshot of the file without
/// running HNSW construction again: the dense graph, the sparse postings, the document
/// table, the vector codec (with the ColBERT codebook once trained) and the saved weights.
struct IndexState {
    var hnsw: HNSWIndex
    var sparse: SparseIndex
    var documents: [Int64: DocumentInfo]
    var codec: ChunkCodec
    /// Norms of the dense vectors of an index created with `normalize` false, by chunk id:
    /// the inner-product graph holds their directions (it needs unit vectors), and the
    /// dense score multiplies the norm back (`denseScore`). Empty for normalised indexes.
    var denseNorms: [Int64: Float] = [:]
    /// Weights saved in the file (`setDefaultWeights`); nil: `SearchIndex.builtInWeights`.
    var savedWeights: FusionWeights?

    /// Reads the state from the file, all from one read transaction, so a writer committing
    /// meanwhile cannot pair one commit's graph with another's chunks; the graph holds its
    /// vectors as `graphEncoding` says (`IndexSettings.graphEncoding` when an index opens;
    /// reloads keep the open graph's). Damage found by the decoders is reported as
    /// `StoreError.corrupt`.
    static func load(from store: IndexStore, settings: IndexSettings, graphEncoding: HNSWIndex.VectorEncoding) throws -> IndexState {
        try store.read {
            do { return try decode(store, settings: settings, graphEncoding: graphEncoding) } catch let error as IndexError {
                throw StoreError.corrupt(path: store.path, detail: "\(error)")
            }
        }
    }

    private static func decode(_ store: IndexStore, settings: IndexSettings, graphEncoding encoding: HNSWIndex.VectorEncoding) throws -> IndexState {
        var documents: [Int64: DocumentInfo] = [:]
        var denseNorms: [Int64: Float] = [:]
        for d in try store.documents() { documents[d.id] = DocumentInfo(path: d.path, metadata: decodeMetadata(d.metadata)) }

        var sparseLoader = SparseIndex.Loader()
        try store.forEachPosting { token, bytes in try sparseLoader.add(token: token, bytes: Array(bytes)) }
        let sparse = sparseLoader.finish()

        let codec = settings.codec.with(codebook: try loadCodebook(store, dimension: settings.dimension, storage: settings.colbertStorage))
        let hnsw: HNSWIndex
        if let header = try store.hnswHeader() {
            // Records first (small: links only), then each vector straight into its slot, so
            // no decoded copy of every vector is held at once.
            var loader = try HNSWIndex.Loader(meta: header, encoding: encoding)
            var liveRecords: [Int64: HNSWNodeRecord] = [:]
            var failure: Error?
            try store.forEachHNSWNode { slot, stored in
                guard failure == nil else { return }
                do {
                    let record = try HNSWNodeRecord(slot: slot, stored: stored)
                    if record.state == .live { liveRecords[record.id] = record } else { try loader.add(record, vector: []) }
                } catch { failure = error }
            }
            if let failure { throw StoreError.corrupt(path: store.path, detail: "\(failure)") }
            try store.forEachDenseVector { id, blob in
                guard let record = liveRecords.removeValue(forKey: id) else { return }
                if encoding == .int8 && settings.denseStorage == .int8 {
                    // The stored codes themselves (after the float32 scale, which cosine does not need).
                    guard blob.count == DenseStorage.int8.bytes(dimension: settings.dimension) else {
                        throw StoreError.corrupt(path: store.path, detail: "dense vector of chunk \(id) has \(blob.count) bytes")
                    }
                    try loader.add(record, codes: UnsafeRawBufferPointer(rebasing: blob[4...]))
                } else {
                    guard let v = codec.decodeDense(blob) else {
                        throw StoreError.corrupt(path: store.path, detail: "dense vector of chunk \(id) has \(blob.count) bytes")
                    }
                    if settings.normalize {
                        try loader.add(record, vector: v)
                    } else {
                        let (direction, norm) = Self.direction(of: v)
                        denseNorms[id] = norm
                        try loader.add(record, vector: direction)
                    }
                }
            }
            // A live node whose chunk is gone: the loader would report the slot as missing.
            if let (id, record) = liveRecords.first {
                throw StoreError.corrupt(path: store.path, detail: "HNSW node slot \(record.slot) holds chunk \(id), which has no row")
            }
            hnsw = try loader.finish()
        } else {
            hnsw = try HNSWIndex(parameters: .init(dimension: settings.dimension, m: settings.hnswM,
                                                   efConstruction: settings.hnswEfConstruction, encoding: encoding))
        }
        return IndexState(hnsw: hnsw, sparse: sparse, documents: documents, codec: codec, denseNorms: denseNorms,
                          savedWeights: try loadSavedWeights(store))
    }

    /// v = norm · direction, with ‖direction‖ = 1: what the graph holds of an unnormalised
    /// vector. A zero (or non-finite) vector gets the first axis and norm 0, so it scores 0.
    static func direction(of v: [Float]) -> (direction: [Float], norm: Float) {
        let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0, norm.isFinite else {
            var axis = [Float](repeating: 0, count: v.count)
            if !axis.isEmpty { axis[0] = 1 }
            return (axis, 0)
        }
        return (v.map { $0 / norm }, norm)
    }

    /// The graph's vector for a chunk as the dense score needs it: query · stored vector
    /// (the direction times its norm for an unnormalised index).
    func denseScore(_ query: [Float], chunkID: Int64) -> Float? {
        guard let v = hnsw.vector(forID: chunkID) else { return nil }
        let dot = Scores.dense(query, v)
        return denseNorms.isEmpty ? dot : dot * (denseNorms[chunkID] ?? 1)
    }

    /// The ColBERT product quantiser stored in the index, if any.
    /// Its subspaces must be the code bytes per row that `storage` stores: a header that
    /// disagrees with the codes would make every decode read past a row (issue 16, item 7).
    static func loadCodebook(_ store: IndexStore, dimension: Int, storage: ColBERTStorage) throws -> ProductQuantizer? {
        guard let data = try store.codebook(name: "colbert") else { return nil }
        do {
            let pq = try ProductQuantizer(serialized: Array(data))
            guard pq.dimension == dimension else { throw IndexError.dimensionMismatch(expected: dimension, actual: pq.dimension) }
            guard case .productQuantized = storage, pq.subspaces == storage.bytesPerRow(dimension: dimension) else {
                throw IndexError.corrupt(what: "codebook", detail: "\(pq.subspaces) subspaces, but the index stores ColBERT rows as \(storage)"
                    + " (\(storage.bytesPerRow(dimension: dimension)) bytes per row)")
            }
            return pq
        } catch {
            throw StoreError.corrupt(path: store.path, detail: "ColBERT codebook: \(error)")
        }
    }

    /// The default weights saved in the file: "dense,sparse,colbert" as decimal text.
    static func loadSavedWeights(_ store: IndexStore) throws -> FusionWeights? {
        guard let text = try store.savedWeights() else { return nil }
        do { return try FusionWeights(parsing: text) } catch {
            throw StoreError.corrupt(path: store.path, detail: "meta \(IndexStore.MetaKey.defaultWeights) \"\(text)\" is not three weights (\(error))")
        }
    }

    static func decodeMetadata(_ json: String?) -> [String: String]? {
        guard let json, let data = json.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: data)
    }
}

/// The index's current state and the lock that guards it: searches read it under the read
/// lock, the writer changes it under the write lock (see IndexWriter's lock story).
final class SharedState: @unchecked Sendable {
    private let lock = ReadWriteLock()
    private var state: IndexState

    init(_ state: IndexState) { self.state = state }

    func read<T>(_ body: (IndexState) throws -> T) rethrows -> T {
        try lock.read { try body(state) }
    }

    func write<T>(_ body: (inout IndexState) throws -> T) rethrows -> T {
        try lock.write { try body(&state) }
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
