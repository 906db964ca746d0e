/// Qdrant: one collection with three named vectors (docs/engines.md, "Qdrant").
///
/// - `collection.json`: the body of `PUT /collections/{name}`: `dense` (Dot, the index's HNSW
///   settings), `colbert` (a multivector compared by `max_sim`, no graph: it reranks, it does
///   not retrieve) and the sparse vector `sparse`.
/// - `points.jsonl`: one point per line, as `PUT /collections/{name}/points` takes them in its
///   `points` array and qdrant-client's `upload_points` takes them as `PointStruct`s:
///   `{"id": "<uuid5 of the chunk id>", "vector": {"dense": [...], "sparse": {"indices": [...],
///   "values": [...]}, "colbert": [[...], ...]}, "payload": {chunk_id, path, chunk, char_start,
///   char_end, token_count, text, metadata}}`.
struct QdrantExport: EngineWriter {
    static let collectionFile = "collection.json"
    static let pointsFile = "points.jsonl"

    private let points: ExportFile

    init(folder: StagingFolder, snapshot: IndexSnapshot) throws {
        let s = snapshot.settings
        // Dot, not Cosine: m3search's dense and ColBERT scores are plain dot products (of
        // normalised vectors unless the index says otherwise), and Cosine would renormalise.
        try folder.write(Self.collectionFile, """
            {
              "vectors": {
                "dense": {"size": \(s.dimension), "distance": "Dot", "hnsw_config": {"m": \(s.hnswM), "ef_construct": \(s.hnswEfConstruction)}},
                "colbert": {"size": \(s.dimension), "distance": "Dot", "multivector_config": {"comparator": "max_sim"}, "hnsw_config": {"m": 0}}
              },
              "sparse_vectors": {"sparse": {}}
            }

            """)
        points = try folder.create(Self.pointsFile)
    }

    mutating func add(_ c: ExportedChunk) throws {
        try points.record { w in try Self.point(c, to: &w) }
    }

    private static func point(_ c: ExportedChunk, to w: inout JSONWriter) throws {
        w.raw("{\"id\":"); w.string(ChunkUUID.make(c.chunkID))
        w.raw(",\"vector\":{\"dense\":"); try ExportRecord.vector(c.dense, to: &w, chunk: c, name: "dense")
        guard c.sparse.weights.allSatisfy(\.isFinite) else { throw ExportError.nonFinite(chunk: c.chunkID, vector: "sparse") }
        w.raw(",\"sparse\":{\"indices\":[")
        w.raw(c.sparse.ids.map(String.init).joined(separator: ","))
        w.raw("],\"values\":"); w.floats(c.sparse.weights)
        w.raw("},\"colbert\":[")
        for row in 0 ..< c.colbert.count {
            if row > 0 { w.raw(",") }
            try ExportRecord.vector(c.colbert[row], to: &w, chunk: c, name: "ColBERT")
        }
        w.raw("]},\"payload\":{")
        ExportRecord.fields(c, to: &w)
        w.raw("}}\n")
    }

    mutating func finish() throws -> [String] {
        try points.close()
        return []
    }
}
