import Foundation
import M3Index
import M3Model
import M3Store

/// A document ready to store: chunked and encoded, outside any lock.
struct PreparedDocument {
    var path: String
    var size: Int64
    var mtime: Double
    var contentHash: String
    var metadata: String?
    var chunks: [Chunk]
    var embeddings: [Embedding]
}

extension SearchIndex {
    /// Adds documents, replacing any with the same id. Encoding happens before the write
    /// lock is taken; the store and the in-memory indexes change in one transaction.
    public func add(_ documents: [DocumentInput]) throws {
        let prepared = try documents.map { doc -> PreparedDocument in
            let data = Data(doc.text.utf8)
            let metadata = try doc.metadata.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            return try prepare(path: doc.id, text: doc.text, size: Int64(data.count), mtime: Date().timeIntervalSince1970,
                               contentHash: DocumentReader.contentHash(data), metadata: metadata)
        }
        try commit(prepared, removing: [])
    }

    /// Removes documents by id (path). Returns how many were present.
    @discardableResult
    public func remove(_ ids: [String]) throws -> Int {
        try commit([], removing: ids)
    }

    /// A chunk whose embeddings were computed elsewhere (benchmarks, `m3search import`).
    package struct EncodedChunk {
        package var text: String
        /// Tokens the encoder saw, `<s>` and `</s>` included (stored as `token_count`).
        package var tokenCount: Int
        package var embedding: Embedding
        /// Range in the document text (Unicode scalars); nil: the chunk texts laid end to end.
        package var charRange: Range<Int>?

        package init(text: String, tokenCount: Int, embedding: Embedding, charRange: Range<Int>? = nil) {
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
        let prepared = try documents.map { doc -> PreparedDocument in
            var chunks: [Chunk] = [], offset = 0
            for (ordinal, c) in doc.chunks.enumerated() {
                guard c.embedding.dense?.count == settings.dimension, c.embedding.sparse != nil,
                      c.embedding.colbert?.dimension == settings.dimension else {
                    throw SearchError.invalidOptions("chunk \(ordinal) of \(doc.id) lacks dense, sparse or \(settings.dimension)-d ColBERT vectors")
                }
                let range = c.charRange ?? offset ..< offset + c.text.unicodeScalars.count
                // Only the count of token ids is stored; the ids themselves are not needed.
                chunks.append(Chunk(ordinal: ordinal, tokenIDs: [Int32](repeating: 0, count: c.tokenCount),
                                    charStart: range.lowerBound, charEnd: range.upperBound, text: c.text))
                offset = range.upperBound
            }
            let text = Data(doc.chunks.map(\.text).joined().utf8)
            let metadata = try doc.metadata.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            return PreparedDocument(path: doc.id, size: doc.size ?? Int64(text.count), mtime: doc.mtime ?? Date().timeIntervalSince1970,
                                    contentHash: doc.contentHash ?? DocumentReader.contentHash(text), metadata: metadata,
                                    chunks: chunks, embeddings: doc.chunks.map(\.embedding))
        }
        try commit(prepared, removing: [])
    }

    /// Chunks and encodes one document's text.
    func prepare(path: String, text: String, size: Int64, mtime: Double, contentHash: String, metadata: String?) throws -> PreparedDocument {
        let chunks = Chunker.chunks(of: text, tokenizer: model.tokenizer, maxLength: settings.maxLength, overlap: settings.overlap)
        let options = EncodeOptions(maxLength: settings.maxLength, outputs: .all,
                                    pooling: Pooling(rawValue: settings.pooling) ?? .cls, normalize: settings.normalize)
        let embeddings = try model.encode(tokenIDs: chunks.map(\.tokenIDs), options: options)
        return PreparedDocument(path: path, size: size, mtime: mtime, contentHash: contentHash, metadata: metadata,
                                chunks: chunks, embeddings: embeddings)
    }

    /// Writes documents (replacing same-path ones) and removals in one transaction, then
    /// persists the changed HNSW nodes and posting lists in it too. If anything fails the
    /// transaction rolls back and the in-memory state is reloaded from the file.
    @discardableResult
    func commit(_ documents: [PreparedDocument], removing removals: [String]) throws -> Int {
        writeLock.lock()
        defer { writeLock.unlock() }
        try takeWriterLock()
        do {
            // PQ storage: the write that brings the index to `codebookMinimumRows` rows
            // trains the codebook on all of them (outside the state lock, so searches go on
            // meanwhile; the write lock keeps other writers out) and re-encodes the float16
            // rows stored so far, in its transaction.
            var newCodebook: ProductQuantizer?
            var reencoded: [(id: Int64, colbert: Data)] = []
            if colbertStorage.needsCodebook && colbertCodebook == nil {
                (newCodebook, reencoded) = try trainCodebookIfDue(documents, replacing: Set(removals + documents.map(\.path)))
            }
            return try stateLock.write {
                try store.db.transaction {
                    if let newCodebook {
                        try store.putCodebook(name: "colbert", data: Data(newCodebook.serialized()))
                        let update = try store.db.prepare("UPDATE chunks SET colbert = ? WHERE id = ?")
                        for row in reencoded { try update.run([.blob(row.colbert), .int(row.id)]) }
                        colbertCodebook = newCodebook
                    }
                    var removed = 0
                    for path in removals + documents.map(\.path) {
                        guard let existing = try store.document(path: path) else { continue }
                        for chunkID in try store.deleteDocument(id: existing.id) {
                            hnsw.remove(id: chunkID)
                            sparse.remove(document: chunkID)
                        }
                        documentInfo[existing.id] = nil
                        if removals.contains(path) { removed += 1 }
                    }
                    for doc in documents {
                        let docID = try store.insertDocument(path: doc.path, size: doc.size, mtime: doc.mtime,
                                                             contentHash: doc.contentHash, metadata: doc.metadata)
                        documentInfo[docID] = (doc.path, Self.decodeMetadata(doc.metadata))
                        for (chunk, e) in zip(doc.chunks, doc.embeddings) {
                            guard let dense = e.dense, let sv = e.sparse, let colbert = e.colbert else { continue }
                            let denseBlob = VectorCoding.encodeDense(dense, storage: denseStorage)
                            let colbertBlob = VectorCoding.encodeColBERT(colbertPruning.apply(colbert), storage: colbertRowStorage,
                                                                         codebook: colbertCodebook)
                            let chunkID = try store.insertChunk(
                                documentID: docID, ordinal: chunk.ordinal, charStart: chunk.charStart, charEnd: chunk.charEnd,
                                tokenCount: chunk.tokenIDs.count, text: chunk.text, dense: denseBlob,
                                sparse: VectorCoding.encodeSparse(sv), colbert: colbertBlob)
                            // The graph holds the stored vector as read back, so a reopened index
                            // (which decodes the stored blobs) searches exactly the same vectors.
                            let graphVector = denseStorage == .f32 ? dense
                                : denseBlob.withUnsafeBytes { VectorCoding.decodeDense($0, dimension: settings.dimension, storage: denseStorage,
                                                                                       unit: settings.normalize)! }
                            try hnsw.insert(id: chunkID, vector: graphVector)
                            if !sv.isEmpty {
                                try sparse.add(document: chunkID, terms: zip(sv.ids, sv.weights).map { (token: $0, weight: $1) })
                            }
                        }
                    }
                    if hnsw.deletedCount > 0 { hnsw.compact() }
                    try persistIndexes()
                    return removed
                }
            }
        } catch {
            // The file rolled back; bring memory back in line with it.
            if let state = try? Self.loadState(store, settings: settings) {
                let codebook = try? Self.loadCodebook(store, dimension: settings.dimension)
                stateLock.write { (hnsw, sparse, documentInfo, colbertCodebook) = (state.0, state.1, state.2, codebook) }
            }
            throw error
        }
    }

    /// Rows sampled for training the ColBERT product quantiser (k-means cost grows with it).
    static let codebookTrainingRows = 16_384

    /// Trains the ColBERT product quantiser once the float16 rows already stored (those of
    /// documents this write keeps) and the batch's (pruned) rows reach `codebookMinimumRows`:
    /// on all of them, or an evenly spaced sample of `codebookTrainingRows`. Returns the
    /// codebook and the stored chunks' rows re-encoded with it; nil while too few rows.
    /// The stored rows are few by construction (fewer than `codebookMinimumRows`).
    func trainCodebookIfDue(_ documents: [PreparedDocument], replacing paths: Set<String>) throws
        -> (ProductQuantizer?, [(id: Int64, colbert: Data)]) {
        guard case .productQuantized(let n) = colbertStorage else { return (nil, []) }
        let d = settings.dimension
        // Count first: most writes of a waiting index stay below the threshold, and then
        // nothing needs decoding.
        var storedRows = 0
        let sizes = try store.db.prepare("SELECT length(c.colbert), d.path FROM chunks c JOIN documents d ON d.id = c.document_id")
        while try sizes.step() {
            if !paths.contains(sizes.text(1)) { storedRows += Int(sizes.int(0)) / (2 * d) }
        }
        var batchRows = 0
        for doc in documents { for e in doc.embeddings { if let c = e.colbert { batchRows += colbertPruning.apply(c).count } } }
        guard batchRows > 0 || storedRows > 0, storedRows + batchRows >= codebookMinimumRows else { return (nil, []) }
        var stored: [(id: Int64, rows: MultiVector)] = []
        let s = try store.db.prepare("SELECT c.id, c.colbert, d.path FROM chunks c JOIN documents d ON d.id = c.document_id")
        while try s.step() {
            if paths.contains(s.text(2)) { continue }
            guard let m = s.withBlob(1, { VectorCoding.decodeColBERT($0, dimension: d, storage: .float16) }) else {
                throw StoreError.corrupt(path: path, detail: "ColBERT vectors of chunk \(s.int(0)) are not whole float16 rows of \(d) values")
            }
            stored.append((s.int(0), m))
        }
        var all: [Float] = stored.flatMap(\.rows.values)
        for doc in documents { for e in doc.embeddings { if let c = e.colbert { all += colbertPruning.apply(c).values } } }
        let codebook = try ProductQuantizer.train(rows: Self.codebookSample(all, dimension: d), dimension: d, subspaces: d / n)
        return (codebook, stored.map { ($0.id, VectorCoding.encodeColBERT($0.rows, storage: colbertStorage, codebook: codebook)) })
    }

    /// All rows, or `codebookTrainingRows` evenly spaced ones.
    package static func codebookSample(_ rows: [Float], dimension d: Int) -> [Float] {
        let count = rows.count / d
        guard count > codebookTrainingRows else { return rows }
        var sample: [Float] = []
        sample.reserveCapacity(codebookTrainingRows * d)
        for i in 0..<codebookTrainingRows {
            let r = i * count / codebookTrainingRows
            sample += rows[r * d ..< (r + 1) * d]
        }
        return sample
    }

    /// Writes the HNSW nodes and posting lists changed since the last commit.
    private func persistIndexes() throws {
        for slot in hnsw.dirtySlots {
            let record = hnsw.nodeRecord(slot: slot)
            var blob = Data(capacity: 8 + record.bytes.count)
            withUnsafeBytes(of: record.id.littleEndian) { blob.append(contentsOf: $0) }
            blob.append(contentsOf: record.bytes)
            try store.putHNSWNode(slot: slot, record: blob)
        }
        try store.setMeta("hnsw_header", Data(hnsw.metaBytes()).base64EncodedString())
        for token in sparse.dirtyTokens {
            let bytes = sparse.postingBytes(token: token)
            try store.putPosting(tokenID: token, maxWeight: sparse.postings[token]?.maxWeight ?? 0, data: Data(bytes ?? []))
        }
        hnsw.clearDirty()
        sparse.clearDirty()
    }
}
