import Foundation
import M3Index
import M3Store

/// What an index holds and where its bytes go (`m3search info`). Read from the file alone,
/// without the model.
public struct IndexInfo: Sendable, Codable {
    public var path: String
    public var settings: IndexSettings
    public var documents: Int
    public var chunks: Int
    /// Σ tokens per chunk (with `<s>` and `</s>`, as encoded).
    public var tokens: Int64
    /// ColBERT rows stored (one per token after `<s>`, fewer with pruning).
    public var colbertRows: Int64
    /// Bytes per component; they add up to `fileBytes`.
    public var components: Components
    public var fileBytes: Int64
    /// The write-ahead log next to the file (folded in at the end of each index run).
    public var walBytes: Int64
    /// Whether table sizes are measured in pages (SQLite's dbstat) or as payload sums.
    public var measuredInPages: Bool

    public struct Components: Sendable, Codable, Equatable {
        /// Document rows, chunk rows with their text and positions, the chunk index.
        public var documentsAndText: Int64
        public var dense: Int64
        /// The node records plus the graph image (format 4: a copy of the graph's rows and links).
        public var hnswGraph: Int64
        /// Posting lists plus each chunk's own sparse vector.
        public var sparse: Int64
        /// ColBERT rows plus the codebook (PQ storage).
        public var colbert: Int64
        /// Settings, the schema, free pages and the unused space in chunk pages (a row that
        /// fills 60% of a page leaves the rest empty).
        public var other: Int64
    }

    public var bytesPerChunk: Double { chunks > 0 ? Double(fileBytes) / Double(chunks) : 0 }
    public var bytesPerToken: Double { tokens > 0 ? Double(fileBytes) / Double(tokens) : 0 }
    public var colbertBytesPerRow: Double { colbertRows > 0 ? Double(components.colbert) / Double(colbertRows) : 0 }

    /// Reads the index at `path` (read-only). Throws `M3SearchError` (`.notFound`,
    /// `.notAnIndex`, `.corrupt`) for a missing, foreign or damaged file.
    public static func read(path: String) throws -> IndexInfo {
        try M3SearchError.boundary { try measure(path: path) }
    }

    private static func measure(path: String) throws -> IndexInfo {
        let store = try IndexStore(path: path, readOnly: true)
        let settings = try IndexSettings(stored: try store.settings(), path: path)
        let z = try store.sizes()
        let codebook = z.pages["codebooks"] ?? z.codebookBytes
        // A PQ index holds float16 rows until it has enough of them to train its codebook.
        let chosen = settings.colbertStorage
        let storage = chosen.needsCodebook && z.codebookBytes == 0 ? .float16 : chosen
        let perRow = storage.bytesPerRow(dimension: settings.dimension)
        var c: Components
        if !z.pages.isEmpty {
            // The chunks table's own pages count as payloads; what is left of them goes to `other`.
            c = Components(documentsAndText: z.pages["documents", default: 0] + z.pages["chunks_by_document", default: 0]
                               + z.pages["sqlite_autoindex_documents_1", default: 0] + z.textBytes,
                           dense: z.denseBytes, hnswGraph: z.pages["hnsw_nodes", default: 0] + z.pages["graph_image", default: 0],
                           sparse: z.pages["postings", default: 0] + z.sparseChunkBytes,
                           colbert: z.colbertBytes + codebook, other: 0)
        } else {
            c = Components(documentsAndText: z.textBytes, dense: z.denseBytes, hnswGraph: z.hnswBytes,
                           sparse: z.postingBytes + z.sparseChunkBytes, colbert: z.colbertBytes + codebook, other: 0)
        }
        c.other = max(0, z.fileBytes - (c.documentsAndText + c.dense + c.hnswGraph + c.sparse + c.colbert))
        return IndexInfo(path: path, settings: settings, documents: z.documents, chunks: z.chunks, tokens: z.tokens,
                         colbertRows: perRow > 0 ? z.colbertBytes / Int64(perRow) : 0, components: c,
                         fileBytes: z.fileBytes, walBytes: z.walBytes, measuredInPages: !z.pages.isEmpty)
    }
}
