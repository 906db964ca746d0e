import Foundation

/// A document row: one indexed file or one document added through the library.
package struct DocumentRecord: Sendable, Equatable {
    package var id: Int64
    package var path: String
    package var size: Int64
    package var mtime: Double
    package var contentHash: String
    /// JSON object of string values, as given to the library; nil: none.
    package var metadata: String?
}

/// A chunk row without its vectors: a token window of a document, with its character
/// range in the source.
package struct ChunkRecord: Sendable, Equatable {
    package var id: Int64
    package var documentID: Int64
    package var ordinal: Int
    package var charStart: Int
    package var charEnd: Int
    package var tokenCount: Int
    package var text: String
    /// JSON object of string values locating the chunk in its source (page, section); nil: none.
    package var metadata: String? = nil
}

/// One stored chunk with its vector blobs borrowed from SQLite: valid only inside the
/// callback that receives it (copy what must outlive it).
package struct ChunkRow {
    package var chunk: ChunkRecord
    package var dense: UnsafeRawBufferPointer
    package var sparse: UnsafeRawBufferPointer
    package var colbert: UnsafeRawBufferPointer
}

/// Where a chunk sits, for scoring and results: no text, no vectors.
package struct ChunkPosition: Sendable, Equatable {
    package var id: Int64
    package var documentID: Int64
    package var ordinal: Int
    package var charStart: Int
    package var charEnd: Int

    package init(id: Int64, documentID: Int64, ordinal: Int, charStart: Int, charEnd: Int) {
        self.id = id
        self.documentID = documentID
        self.ordinal = ordinal
        self.charStart = charStart
        self.charEnd = charEnd
    }
}

extension IndexStore {
    // MARK: - Documents

    /// Every document, by id.
    package func documents() throws -> [DocumentRecord] {
        let s = try db.prepare("SELECT id, path, size, mtime, content_hash, metadata FROM documents ORDER BY id")
        var out: [DocumentRecord] = []
        while try s.step() { out.append(Self.document(s)) }
        return out
    }

    /// The documents with the given ids that exist, by id.
    package func documents(ids: [Int64]) throws -> [Int64: DocumentRecord] {
        var out: [Int64: DocumentRecord] = [:]
        for start in stride(from: 0, to: ids.count, by: Self.idsPerStatement) {
            let slice = ids[start ..< min(start + Self.idsPerStatement, ids.count)]
            let s = try db.prepare("SELECT id, path, size, mtime, content_hash, metadata FROM documents WHERE id IN ("
                                   + slice.map { _ in "?" }.joined(separator: ",") + ")")
            try s.bind(slice.map { .int($0) })
            while try s.step() {
                let d = Self.document(s)
                out[d.id] = d
            }
        }
        return out
    }

    /// How many documents the file holds.
    package func documentCount() throws -> Int {
        let s = try db.prepare("SELECT count(*) FROM documents")
        return try s.step() ? Int(s.int(0)) : 0
    }

    package func document(path: String) throws -> DocumentRecord? {
        let s = try db.prepare("SELECT id, path, size, mtime, content_hash, metadata FROM documents WHERE path = ?")
        try s.bind([.text(path)])
        return try s.step() ? Self.document(s) : nil
    }

    private static func document(_ s: Statement, from column: Int32 = 0) -> DocumentRecord {
        DocumentRecord(id: s.int(column), path: s.text(column + 1), size: s.int(column + 2), mtime: s.double(column + 3),
                       contentHash: s.text(column + 4), metadata: s.isNull(column + 5) ? nil : s.text(column + 5))
    }

    package func insertDocument(path: String, size: Int64, mtime: Double, contentHash: String, metadata: String?) throws -> Int64 {
        try db.prepare("INSERT INTO documents(path, size, mtime, content_hash, metadata, indexed_at) VALUES(?, ?, ?, ?, ?, ?)")
            .run([.text(path), .int(size), .double(mtime), .text(contentHash), metadata.map { .text($0) } ?? .null,
                  .double(Date().timeIntervalSince1970)])
        return db.lastInsertRowID
    }

    /// Records a document file's new size and mtime (its content is unchanged).
    package func touchDocument(id: Int64, size: Int64, mtime: Double) throws {
        try db.prepare("UPDATE documents SET size = ?, mtime = ? WHERE id = ?").run([.int(size), .double(mtime), .int(id)])
    }

    /// Deletes a document and its chunks; returns the removed chunk ids.
    package func deleteDocument(id: Int64) throws -> [Int64] {
        let ids = try chunkIDs(documentID: id)
        try db.prepare("DELETE FROM chunk_checksums WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = ?)").run([.int(id)])
        try db.prepare("DELETE FROM chunks WHERE document_id = ?").run([.int(id)])
        try db.prepare("DELETE FROM documents WHERE id = ?").run([.int(id)])
        return ids
    }

    /// Documents and chunks in the file.
    package func counts() throws -> (documents: Int, chunks: Int) {
        (Int(try db.scalarInt("SELECT count(*) FROM documents") ?? 0), Int(try db.scalarInt("SELECT count(*) FROM chunks") ?? 0))
    }

    /// Documents that have at least one chunk (what an export holds), and chunks.
    package func exportCounts() throws -> (documents: Int, chunks: Int) {
        (Int(try db.scalarInt("SELECT count(DISTINCT document_id) FROM chunks") ?? 0),
         Int(try db.scalarInt("SELECT count(*) FROM chunks") ?? 0))
    }

    // MARK: - Chunks

    package func insertChunk(documentID: Int64, ordinal: Int, charStart: Int, charEnd: Int, tokenCount: Int,
                             text: String, dense: Data, sparse: Data, colbert: Data, metadata: String? = nil) throws -> Int64 {
        try db.prepare("""
            INSERT INTO chunks(document_id, ordinal, char_start, char_end, token_count, text, dense, sparse, colbert, metadata)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).run([.int(documentID), .int(Int64(ordinal)), .int(Int64(charStart)), .int(Int64(charEnd)),
                      .int(Int64(tokenCount)), .text(text), .blob(dense), .blob(sparse), .blob(colbert),
                      metadata.map { .text($0) } ?? .null])
        let id = db.lastInsertRowID
        let sums = dense.withUnsafeBytes { d in sparse.withUnsafeBytes { s in colbert.withUnsafeBytes { c in
            Self.checksums(documentID: documentID, ordinal: Int64(ordinal), charStart: Int64(charStart), charEnd: Int64(charEnd),
                           tokenCount: Int64(tokenCount), text: text, dense: d, sparse: s, colbert: c)
        } } }
        try putChecksums(chunkID: id, sums)
        return id
    }

    package func chunk(id: Int64) throws -> ChunkRecord? {
        let s = try db.prepare("SELECT id, document_id, ordinal, char_start, char_end, token_count, text, \(chunkMetadataColumn) FROM chunks WHERE id = ?")
        try s.bind([.int(id)])
        guard try s.step() else { return nil }
        return Self.chunk(s, metadataColumn: 7)
    }

    /// `metadata`, or NULL in a format-2 file read without migrating.
    private var chunkMetadataColumn: String { hasChunkMetadata ? "metadata" : "NULL" }

    /// The chunk columns id…text from column `c`; its metadata from `metadataColumn`.
    private static func chunk(_ s: Statement, from c: Int32 = 0, metadataColumn m: Int32) -> ChunkRecord {
        ChunkRecord(id: s.int(c), documentID: s.int(c + 1), ordinal: Int(truncatingIfNeeded: s.int(c + 2)),
                    charStart: Int(truncatingIfNeeded: s.int(c + 3)), charEnd: Int(truncatingIfNeeded: s.int(c + 4)),
                    tokenCount: Int(truncatingIfNeeded: s.int(c + 5)), text: s.text(c + 6),
                    metadata: s.isNull(m) ? nil : s.text(m))
    }

    /// The chunk ids of one document, by ordinal.
    package func chunkIDs(documentID: Int64) throws -> [Int64] {
        let s = try db.prepare("SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal")
        try s.bind([.int(documentID)])
        var ids: [Int64] = []
        while try s.step() { ids.append(s.int(0)) }
        return ids
    }

    /// Every chunk id, ascending.
    package func chunkIDs() throws -> [Int64] {
        let s = try db.prepare("SELECT id FROM chunks ORDER BY id")
        var ids: [Int64] = []
        while try s.step() { ids.append(s.int(0)) }
        return ids
    }

    /// Calls `body` for every chunk, by id, with its dense blob (borrowed): what an open
    /// index needs to rebuild its graph.
    /// Each blob is verified against its checksum (`StoreError.corrupt` on a mismatch).
    package func forEachDenseVector(_ body: (_ chunkID: Int64, _ dense: UnsafeRawBufferPointer) throws -> Void) throws {
        let checked = try hasChecksums()
        let s = try db.prepare(checked ? "SELECT c.id, c.dense, k.dense FROM chunks c LEFT JOIN chunk_checksums k ON k.chunk_id = c.id ORDER BY c.id"
                                       : "SELECT id, dense, NULL FROM chunks ORDER BY id")
        while try s.step() {
            try s.withBlob(1) { dense in
                if !s.isNull(2), Self.digest(dense, seed: 1) != s.int(2) { throw checksumMismatch(s.int(0), "dense vector") }
                try body(s.int(0), dense)
            }
        }
    }

    /// Calls `body` for every chunk, by id, with all its columns.
    /// Every row is verified against its checksums (`StoreError.corrupt` on a mismatch).
    package func forEachChunk(_ body: (ChunkRow) throws -> Void) throws {
        let s = try db.prepare("""
            SELECT c.id, c.document_id, c.ordinal, c.char_start, c.char_end, c.token_count, c.text, c.dense, c.sparse, c.colbert,
                   \(hasChunkMetadata ? "c.metadata" : "NULL"), \(try checksumColumns)
            FROM chunks c \(try checksumJoin) ORDER BY c.id
            """)
        while try s.step() { try withVerifiedRow(s, from: 0, body) }
    }

    /// Calls `body` for every chunk with its document, by document id and ordinal (what an
    /// export writes); documents without chunks are not visited.
    package func forEachChunkWithDocument(_ body: (DocumentRecord, ChunkRow) throws -> Void) throws {
        let s = try db.prepare("""
            SELECT d.id, d.path, d.size, d.mtime, d.content_hash, d.metadata,
                   c.id, c.document_id, c.ordinal, c.char_start, c.char_end, c.token_count, c.text, c.dense, c.sparse, c.colbert,
                   \(hasChunkMetadata ? "c.metadata" : "NULL"), \(try checksumColumns)
            FROM chunks c JOIN documents d ON d.id = c.document_id \(try checksumJoin) ORDER BY d.id, c.ordinal
            """)
        while try s.step() {
            let document = Self.document(s)
            try withVerifiedRow(s, from: 6) { try body(document, $0) }
        }
    }

    /// The checksum columns (dense, colbert, row) after a row's eleven, NULL when the file has no
    /// checksum table (a read-only file from before them: not yet checked).
    private var checksumColumns: String {
        get throws { try hasChecksums() ? "k.dense, k.colbert, k.row" : "NULL, NULL, NULL" }
    }
    private var checksumJoin: String {
        get throws { try hasChecksums() ? "LEFT JOIN chunk_checksums k ON k.chunk_id = c.id" : "" }
    }

    /// `withRow`, after checking the row against the checksums in the three columns after it
    /// (after the metadata column, which the checksums do not cover).
    private func withVerifiedRow(_ s: Statement, from c: Int32, _ body: (ChunkRow) throws -> Void) throws {
        try Self.withRow(s, from: c) { row in
            if !s.isNull(c + 11) {
                let chunk = row.chunk
                if Self.digest(row.dense, seed: 1) != s.int(c + 11) { throw checksumMismatch(chunk.id, "dense vector") }
                if Self.digest(row.colbert, seed: 2) != s.int(c + 12) { throw checksumMismatch(chunk.id, "ColBERT vectors") }
                let rowSum = Self.rowDigest(documentID: s.int(c + 1), ordinal: s.int(c + 2), charStart: s.int(c + 3), charEnd: s.int(c + 4),
                                            tokenCount: s.int(c + 5), sparse: row.sparse, text: chunk.text)
                if rowSum != s.int(c + 13) { throw checksumMismatch(chunk.id, "text, sparse vector or position") }
            }
            try body(row)
        }
    }

    private static func withRow(_ s: Statement, from c: Int32, _ body: (ChunkRow) throws -> Void) throws {
        let chunk = Self.chunk(s, from: c, metadataColumn: c + 10)
        try s.withBlob(c + 7) { dense in
            try s.withBlob(c + 8) { sparse in
                try s.withBlob(c + 9) { colbert in
                    try body(ChunkRow(chunk: chunk, dense: dense, sparse: sparse, colbert: colbert))
                }
            }
        }
    }

    /// SQLite limits bound parameters; 500 ids per statement is far below it.
    private static let idsPerStatement = 500

    /// Calls `body` for each of the given chunks that exists (in no particular order) with
    /// its position and, when `colbert`, its ColBERT blob (borrowed; empty otherwise): the
    /// rows a search rescores.
    package func chunkScoringRows(ids: [Int64], colbert: Bool,
                                  _ body: (ChunkPosition, UnsafeRawBufferPointer) throws -> Void) throws {
        // The ColBERT blob is verified against its checksum when the file has them.
        let checked = try colbert && hasChecksums()
        let columns = "c.id, c.document_id, c.ordinal, c.char_start, c.char_end" + (colbert ? ", c.colbert" : "") + (checked ? ", k.colbert" : "")
        let join = checked ? " LEFT JOIN chunk_checksums k ON k.chunk_id = c.id" : ""
        for start in stride(from: 0, to: ids.count, by: Self.idsPerStatement) {
            let slice = ids[start ..< min(start + Self.idsPerStatement, ids.count)]
            let s = try db.prepare("SELECT \(columns) FROM chunks c\(join) WHERE c.id IN (\(slice.map { _ in "?" }.joined(separator: ",")))")
            try s.bind(slice.map { .int($0) })
            while try s.step() {
                let position = ChunkPosition(id: s.int(0), documentID: s.int(1), ordinal: Int(truncatingIfNeeded: s.int(2)),
                                             charStart: Int(truncatingIfNeeded: s.int(3)), charEnd: Int(truncatingIfNeeded: s.int(4)))
                if colbert {
                    try s.withBlob(5) { blob in
                        if checked, !s.isNull(6), Self.digest(blob, seed: 2) != s.int(6) { throw checksumMismatch(position.id, "ColBERT vectors") }
                        try body(position, blob)
                    }
                } else {
                    try body(position, UnsafeRawBufferPointer(start: nil, count: 0))
                }
            }
        }
    }

    /// The texts of the given chunks that exist, by id.
    package func chunkTexts(ids: [Int64]) throws -> [Int64: String] {
        var out: [Int64: String] = [:]
        for start in stride(from: 0, to: ids.count, by: Self.idsPerStatement) {
            let slice = ids[start ..< min(start + Self.idsPerStatement, ids.count)]
            let s = try db.prepare("SELECT id, text FROM chunks WHERE id IN (\(slice.map { _ in "?" }.joined(separator: ",")))")
            try s.bind(slice.map { .int($0) })
            while try s.step() { out[s.int(0)] = s.text(1) }
        }
        return out
    }

    /// The metadata (JSON) of the given chunks that have some, by id.
    package func chunkMetadata(ids: [Int64]) throws -> [Int64: String] {
        var out: [Int64: String] = [:]
        guard hasChunkMetadata else { return out }
        for start in stride(from: 0, to: ids.count, by: Self.idsPerStatement) {
            let slice = ids[start ..< min(start + Self.idsPerStatement, ids.count)]
            let s = try db.prepare("SELECT id, metadata FROM chunks WHERE metadata IS NOT NULL AND id IN (\(slice.map { _ in "?" }.joined(separator: ",")))")
            try s.bind(slice.map { .int($0) })
            while try s.step() { out[s.int(0)] = s.text(1) }
        }
        return out
    }

    /// The ColBERT blob of one chunk.
    package func colbert(chunkID: Int64) throws -> Data? {
        let s = try db.prepare("SELECT colbert FROM chunks WHERE id = ?")
        try s.bind([.int(chunkID)])
        return try s.step() ? s.blob(0) : nil
    }

    /// Calls `body` for every chunk with its document's path and its ColBERT blob's length.
    package func forEachColBERTLength(_ body: (_ documentPath: String, _ bytes: Int) throws -> Void) throws {
        let s = try db.prepare("SELECT length(c.colbert), d.path FROM chunks c JOIN documents d ON d.id = c.document_id")
        while try s.step() { try body(s.text(1), Int(truncatingIfNeeded: s.int(0))) }
    }

    /// Calls `body` for every chunk with its id, its document's path and its ColBERT blob (borrowed).
    package func forEachColBERT(_ body: (_ chunkID: Int64, _ documentPath: String, _ blob: UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT c.id, c.colbert, d.path FROM chunks c JOIN documents d ON d.id = c.document_id")
        while try s.step() { try s.withBlob(1) { try body(s.int(0), s.text(2), $0) } }
    }

    /// Replaces the ColBERT blobs of the given chunks (re-encoding with a new codebook).
    package func replaceColBERT(_ rows: [(chunkID: Int64, blob: Data)]) throws {
        let update = try db.prepare("UPDATE chunks SET colbert = ? WHERE id = ?")
        let sum = try db.prepare("UPDATE chunk_checksums SET colbert = ? WHERE chunk_id = ?")
        for row in rows {
            try update.run([.blob(row.blob), .int(row.chunkID)])
            try sum.run([.int(row.blob.withUnsafeBytes { Self.digest($0, seed: 2) }), .int(row.chunkID)])
        }
    }
}
