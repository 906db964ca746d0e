import Foundation
import M3Index
import M3Model
import M3Store

/// One stored chunk with its document's fields and its vectors decoded to float32: what
/// `m3search export` writes per line, and enough for `add(encoded:)` to rebuild it.
package struct ExportedChunk {
    package var documentID: String
    package var metadata: [String: String]?
    /// Where the chunk sits in its source (page, section); nil: nothing stored.
    package var chunkMetadata: [String: String]?
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
    /// Throws `M3SearchError` (`.notFound`, `.notAnIndex` for a bad path, `.corrupt` when a
    /// stored vector does not decode), and whatever the callbacks throw, classified the same way.
    package static func export(indexAt path: String, header: (IndexSnapshot) throws -> Void,
                               chunk body: (ExportedChunk) throws -> Void) throws {
        try M3SearchError.boundary {
            guard FileManager.default.fileExists(atPath: path) else { throw StoreError.missing(path: path) }
            let store = try IndexStore(path: path, readOnly: true)
            try store.read {
                let settings = try IndexSettings(stored: try store.settings(), path: path)
                // Documents are counted by their chunks: one without chunks has no line to export.
                let counts = try store.exportCounts()
                try header(IndexSnapshot(settings: settings, defaultWeights: try IndexState.loadSavedWeights(store),
                                         documents: counts.documents, chunks: counts.chunks))
                // Vectors are decoded from the index's storage (the PQ codebook for pq storage).
                let codec = settings.codec.with(codebook: try IndexState.loadCodebook(store, dimension: settings.dimension, storage: settings.colbertStorage))
                try forEachChunk(store, codec: codec, body)
            }
        }
    }

    private static func forEachChunk(_ store: IndexStore, codec: ChunkCodec, _ body: (ExportedChunk) throws -> Void) throws {
        try store.forEachChunkWithDocument { document, row in
            let c = row.chunk
            func corrupt(_ what: String) -> StoreError { .corrupt(path: store.path, detail: "\(what) of chunk \(c.id) does not decode") }
            guard let dense = codec.decodeDense(row.dense) else { throw corrupt("the dense vector") }
            guard let sparse = VectorCoding.decodeSparse(row.sparse) else { throw corrupt("the sparse vector") }
            guard let colbert = codec.decodeColBERT(row.colbert) else { throw corrupt("the ColBERT vectors") }
            guard c.charStart >= 0, c.charEnd >= c.charStart else { throw corrupt("the character range") }
            try body(ExportedChunk(
                documentID: document.path, metadata: IndexState.decodeMetadata(document.metadata),
                chunkMetadata: IndexState.decodeMetadata(c.metadata),
                size: document.size, mtime: document.mtime, contentHash: document.contentHash,
                ordinal: c.ordinal, charRange: c.charStart ..< c.charEnd, tokenCount: c.tokenCount,
                text: c.text, dense: dense, sparse: sparse, colbert: colbert))
        }
    }
}
