import Foundation
import M3Model

extension SearchIndex {
    /// A chunk whose embeddings were computed elsewhere (benchmarks, `m3search import`).
    package struct EncodedChunk {
        package var text: String
        /// Tokens the encoder saw, `<s>` and `</s>` included (stored as `token_count`).
        package var tokenCount: Int
        package var embedding: Embedding
        /// Range in the document text (Unicode scalars); nil: the chunk texts laid end to end.
        package var charRange: Range<Int>?
        /// Where the chunk sits in its source (page, section); nil: nothing.
        package var metadata: [String: String]?

        package init(text: String, tokenCount: Int, embedding: Embedding, charRange: Range<Int>? = nil,
                     metadata: [String: String]? = nil) {
            self.metadata = metadata
            self.text = text
            self.tokenCount = tokenCount
            self.embedding = embedding
            self.charRange = charRange
        }
    }

    /// A document of precomputed chunks, with what `m3search export` keeps of its source file.
    package struct EncodedDocument {
        package var id: String
        package var metadata: [String: String]?
        package var chunks: [EncodedChunk]
        /// The source file's size, mtime and content hash (for incremental indexing); nil:
        /// derived from the chunk texts and the current time.
        package var size: Int64?
        package var mtime: Double?
        package var contentHash: String?

        package init(id: String, metadata: [String: String]? = nil, chunks: [EncodedChunk],
                     size: Int64? = nil, mtime: Double? = nil, contentHash: String? = nil) {
            self.id = id
            self.metadata = metadata
            self.chunks = chunks
            self.size = size
            self.mtime = mtime
            self.contentHash = contentHash
        }
    }

    package func add(encoded documents: [(id: String, chunks: [EncodedChunk])]) throws {
        try add(encoded: documents.map { EncodedDocument(id: $0.id, chunks: $0.chunks) })
    }

    /// Adds documents from precomputed chunk embeddings, without running the model, in one
    /// transaction like `add` (same-id documents are replaced). Each embedding needs dense,
    /// sparse and ColBERT outputs of this index's dimension. Not public: the model is the
    /// source of embeddings.
    package func add(encoded documents: [EncodedDocument]) throws {
        try M3SearchError.boundary {
            let ingestion = ingestion
            try writer.add(try documents.map { try ingestion.prepare($0) })
        }
    }
}
