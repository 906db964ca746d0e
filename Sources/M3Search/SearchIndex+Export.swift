import Foundation
import M3Model
import M3Store

/// One stored chunk with its document's fields and its vectors decoded to float32: what
/// `m3search export` writes per line, and enough for `add(encoded:)` to rebuild it.
package struct ExportedChunk {
    package var documentID: String
    package var metadata: [String: String]?
    /// The source document's size in bytes, mtime and content hash, as stored.
    package var size: Int64
    package var mtime: Double
    package var contentHash: String
    package var ordinal: Int
    package var charRange: Range<Int>
    package var tokenCount: Int
    package var text: String
    package var dense: [Float]
    package var sparse: SparseVector
    package var colbert: MultiVector
}

/// What an export states before its chunks: the index's settings, saved weights and counts.
package struct IndexSnapshot {
    package var settings: IndexSettings
    package var defaultWeights: FusionWeights?
    package var documents: Int
    package var chunks: Int
}

extension SearchIndex {
    /// Reads the index at `path` without a model: `header` once, then `chunk` for every
    /// chunk, by document (in insertion order) and ordinal, one row in memory at a time. All
    /// in one read transaction, so the export is a consistent snapshot while writers continue.
    ///
    /// Throws `StoreError.missing`/`.notAnIndex` for a bad path, `.corrupt` when a stored
    /// vector does not decode, and whatever the callbacks throw.
    package static func export(indexAt path: String, header: (IndexSnapshot) throws -> Void,
                               chunk body: (ExportedChunk) throws -> Void) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.missing(path: path) }
        let connection = try IndexStore(path: path, readOnly: true)
        try connection.db.transaction(immediate: false) {
            let settings = try connection.settings()
            // Documents are counted by their chunks: one without chunks has no line to export.
            let documents = Int(try connection.db.scalarInt("SELECT count(DISTINCT document_id) FROM chunks") ?? 0)
            let chunks = Int(try connection.db.scalarInt("SELECT count(*) FROM chunks") ?? 0)
            try header(IndexSnapshot(settings: settings, defaultWeights: try loadDefaultWeights(connection),
                                     documents: documents, chunks: chunks))
            try forEachChunk(connection, settings: settings, body)
        }
    }

    private static func forEachChunk(_ connection: IndexStore, settings: IndexSettings, _ body: (ExportedChunk) throws -> Void) throws {
        let path = connection.path
        let d = settings.dimension
        // Vectors are decoded from the index's storage (the PQ codebook for pq storage).
        guard let colbertStorage = ColBERTStorage(settings.colbertStorage),
              let denseStorage = DenseStorage(rawValue: settings.denseStorage) else {
            throw StoreError.corrupt(path: path, detail: "unknown storage in settings (ColBERT \(settings.colbertStorage), dense \(settings.denseStorage))")
        }
        let codebook = try loadCodebook(connection, dimension: d)
        // A PQ index still waiting for its codebook holds float16 rows.
        let colbertRows = colbertStorage.needsCodebook && codebook == nil ? .float16 : colbertStorage
        let s = try connection.db.prepare("""
            SELECT d.path, d.metadata, d.size, d.mtime, d.content_hash,
                   c.id, c.ordinal, c.char_start, c.char_end, c.token_count, c.text, c.dense, c.sparse, c.colbert
            FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY d.id, c.ordinal
            """)
        while try s.step() {
            let chunkID = s.int(5)
            func corrupt(_ what: String) -> StoreError { .corrupt(path: path, detail: "\(what) of chunk \(chunkID) does not decode") }
            guard let dense = s.withBlob(11, { VectorCoding.decodeDense($0, dimension: d, storage: denseStorage,
                                                                                 unit: settings.normalize) }) else { throw corrupt("the dense vector") }
            guard let sparse = s.withBlob(12, { VectorCoding.decodeSparse($0) }) else { throw corrupt("the sparse vector") }
            guard let colbert = s.withBlob(13, { VectorCoding.decodeColBERT($0, dimension: d, storage: colbertRows,
                                                                                     codebook: codebook) }) else { throw corrupt("the ColBERT vectors") }
            guard s.int(7) >= 0, s.int(8) >= s.int(7) else { throw corrupt("the character range") }
            try body(ExportedChunk(
                documentID: s.text(0), metadata: s.isNull(1) ? nil : Self.decodeMetadata(s.text(1)),
                size: s.int(2), mtime: s.double(3), contentHash: s.text(4),
                ordinal: Int(s.int(6)), charRange: Int(s.int(7)) ..< Int(s.int(8)), tokenCount: Int(s.int(9)),
                text: s.text(10), dense: dense, sparse: sparse, colbert: colbert))
        }
    }
}
