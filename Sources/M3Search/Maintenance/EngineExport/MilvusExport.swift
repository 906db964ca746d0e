import Foundation

/// Milvus: two collections (docs/engines.md, "Milvus").
///
/// Milvus Lite (what pip installs) has no field that holds a list of vectors per row, and
/// Milvus server has one (Array of Structs with MAX_SIM) only from 2.6.4 on; so ColBERT goes
/// into a second collection with one row per token vector, which every version loads.
///
/// - `chunks.collection.json`, `colbert.collection.json`: the bodies of the REST API's
///   `POST /v2/vectordb/collections/create` (schema and index parameters).
/// - `chunks/part-NNNNN.json`: `{"rows": [...]}` with one row per line: chunk_id (primary
///   key), path, chunk, char_start, char_end, token_count, text, metadata, colbert_rows, dense,
///   sparse (`{"<token id>": weight}`). The row-based JSON that bulk import
///   (`POST /v2/vectordb/jobs/import/create`) reads in every version since 2.2; each row is
///   also what `insert` takes.
/// - `colbert/part-NNNNN.json`: the same form, one row per ColBERT vector: id
///   (`"<chunk_id>/<token>"`, the primary key), chunk_id, token, vector. A chunk's rows are
///   fetched by primary key (`get`, ids from `colbert_rows`), the fast path in every Milvus, and
///   feeding an export again overwrites them.
///
/// A part closes once it passes `EngineExport.milvusPartBytes`, so no file nears bulk import's size limit.
struct MilvusExport: EngineWriter {
    static let chunksCollection = "m3_chunks"
    static let colbertCollection = "m3_colbert"
    /// Milvus's limit on a VARCHAR's max_length.
    static let varcharLimit = 65_535
    /// max_length of chunk_id and path unless a longer one occurs (PATH_MAX).
    static let idLength = 4_096
    /// Milvus refuses a sparse row without entries. A chunk whose sparse vector is empty gets
    /// this one entry instead: no tokenizer produces the id, so no query shares it and every
    /// sparse score stays what m3search computes.
    static let placeholderToken: UInt32 = 4_294_967_294
    static let placeholderWeight = Float.leastNormalMagnitude

    private let snapshot: IndexSnapshot
    private let chunkRows: PartWriter
    private let colbertRows: PartWriter
    private let folder: StagingFolder
    private var longestID = 0, longestPath = 0
    private var placeholders = 0

    init(folder: StagingFolder, snapshot: IndexSnapshot, partBytes: Int) throws {
        self.folder = folder
        self.snapshot = snapshot
        chunkRows = PartWriter(folder: folder, prefix: "chunks", limit: partBytes)
        colbertRows = PartWriter(folder: folder, prefix: "colbert", limit: partBytes)
    }

    mutating func add(_ c: ExportedChunk) throws {
        let id = c.chunkID
        longestID = max(longestID, id.utf8.count)
        longestPath = max(longestPath, c.documentID.utf8.count)
        // The token rows' key is "<chunk id>/<row>": keep room for the row number.
        for (field, bytes, limit) in [("chunk id", id.utf8.count, Self.varcharLimit - 11), ("text", c.text.utf8.count, Self.varcharLimit)] where bytes > limit {
            throw ExportError.tooLong(chunk: id, field: field, bytes: bytes, limit: limit, engine: "a Milvus VARCHAR")
        }
        if c.sparse.isEmpty { placeholders += 1 }
        try chunkRows.row { w in
            w.raw("{")
            ExportRecord.fields(c, to: &w)
            w.raw(",\"colbert_rows\":\(c.colbert.count),\"dense\":"); try ExportRecord.vector(c.dense, to: &w, chunk: c, name: "dense")
            w.raw(",\"sparse\":")
            if c.sparse.isEmpty {
                w.raw("{\"\(Self.placeholderToken)\":"); w.number(Self.placeholderWeight); w.raw("}")
            } else {
                try ExportRecord.sparseObject(c, to: &w)
            }
            w.raw("}")
        }
        for token in 0 ..< c.colbert.count {
            try colbertRows.row { w in
                w.raw("{\"id\":"); w.string("\(id)/\(token)")
                w.raw(",\"chunk_id\":"); w.string(id)
                w.raw(",\"token\":\(token),\"vector\":")
                try ExportRecord.vector(c.colbert[token], to: &w, chunk: c, name: "ColBERT")
                w.raw("}")
            }
        }
    }

    mutating func finish() throws -> [String] {
        try chunkRows.finish()
        try colbertRows.finish()
        let d = snapshot.settings.dimension
        let idLength = max(Self.idLength, longestID), pathLength = max(Self.idLength, longestPath)
        try folder.write("chunks.collection.json", """
            {
              "collectionName": "\(Self.chunksCollection)",
              "schema": {
                "autoID": false,
                "enableDynamicField": false,
                "fields": [
                  {"fieldName": "chunk_id", "dataType": "VarChar", "isPrimary": true, "elementTypeParams": {"max_length": \(idLength)}},
                  {"fieldName": "path", "dataType": "VarChar", "elementTypeParams": {"max_length": \(pathLength)}},
                  {"fieldName": "chunk", "dataType": "Int64"},
                  {"fieldName": "char_start", "dataType": "Int64"},
                  {"fieldName": "char_end", "dataType": "Int64"},
                  {"fieldName": "token_count", "dataType": "Int64"},
                  {"fieldName": "text", "dataType": "VarChar", "elementTypeParams": {"max_length": \(Self.varcharLimit)}},
                  {"fieldName": "metadata", "dataType": "JSON"},
                  {"fieldName": "colbert_rows", "dataType": "Int64"},
                  {"fieldName": "dense", "dataType": "FloatVector", "elementTypeParams": {"dim": \(d)}},
                  {"fieldName": "sparse", "dataType": "SparseFloatVector"}
                ]
              },
              "indexParams": [
                {"fieldName": "dense", "indexName": "dense", "metricType": "IP", "indexType": "HNSW", "params": {"M": \(snapshot.settings.hnswM), "efConstruction": \(snapshot.settings.hnswEfConstruction)}},
                {"fieldName": "sparse", "indexName": "sparse", "metricType": "IP", "indexType": "SPARSE_INVERTED_INDEX"}
              ]
            }

            """)
        // The token vectors are read by primary key, never searched: a FLAT index (Milvus
        // requires one before loading); chunk_id is indexed for deletes by filter.
        try folder.write("colbert.collection.json", """
            {
              "collectionName": "\(Self.colbertCollection)",
              "schema": {
                "autoID": false,
                "enableDynamicField": false,
                "fields": [
                  {"fieldName": "id", "dataType": "VarChar", "isPrimary": true, "elementTypeParams": {"max_length": \(idLength + 11)}},
                  {"fieldName": "chunk_id", "dataType": "VarChar", "elementTypeParams": {"max_length": \(idLength)}},
                  {"fieldName": "token", "dataType": "Int64"},
                  {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": \(d)}}
                ]
              },
              "indexParams": [
                {"fieldName": "vector", "indexName": "vector", "metricType": "IP", "indexType": "FLAT"},
                {"fieldName": "chunk_id", "indexName": "chunk_id", "indexType": "INVERTED"}
              ]
            }

            """)
        guard placeholders > 0 else { return [] }
        return ["\(placeholders) chunk(s) have no sparse weights; Milvus refuses an empty sparse row, so each holds "
            + "the placeholder {\"\(Self.placeholderToken)\": \(Self.placeholderWeight)}, a token id no query contains"]
    }
}

/// Files `<prefix>/part-00000.json`, … of the form `{"rows":[` row `,` row … `]}`, one row
/// per line; a new part starts once the current one passes `limit` bytes.
final class PartWriter {
    private let folder: StagingFolder
    private let prefix: String
    private let limit: Int
    private var current: ExportFile?
    private var parts = 0

    init(folder: StagingFolder, prefix: String, limit: Int) {
        self.folder = folder
        self.prefix = prefix
        self.limit = limit
    }

    func row(_ body: (inout JSONWriter) throws -> Void) throws {
        let opening = current == nil
        if opening {
            current = try folder.create(prefix + "/part-" + String(repeating: "0", count: max(0, 5 - String(parts).count)) + "\(parts).json")
            parts += 1
        }
        guard let file = current else { return }
        try file.record { w in
            w.raw(opening ? "{\"rows\":[\n" : ",\n")
            try body(&w)
        }
        if file.size >= limit { try close() }
    }

    func finish() throws { if current != nil { try close() } }

    private func close() throws {
        try current?.record { $0.raw("\n]}\n") }
        try current?.close()
        current = nil
    }
}
