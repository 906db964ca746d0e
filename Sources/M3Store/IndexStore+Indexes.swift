import Foundation

/// The persisted forms of the in-memory indexes: the HNSW graph (a header in the meta
/// table and one record per slot), the sparse posting lists and the codebooks. The bytes
/// are M3Index's; the store keeps them by key.
extension IndexStore {
    // MARK: - HNSW graph

    /// The graph's header, or nil when the index has no graph yet: no header row, no node
    /// records and no chunks. Throws `StoreError.corrupt` when the row is not base64 (an
    /// index never writes that), or is missing while nodes or chunks are stored: reading
    /// such a file as empty would answer "no documents" and the next write would replace
    /// the graph with a one-node one (issue 16, item 4).
    package func hnswHeader() throws -> [UInt8]? {
        guard let text = try meta(MetaKey.hnswHeader) else {
            let nodes = try db.scalarInt("SELECT count(*) FROM hnsw_nodes") ?? 0
            let chunks = try db.scalarInt("SELECT count(*) FROM chunks") ?? 0
            if nodes > 0 || chunks > 0 {
                throw StoreError.corrupt(path: path, detail: "its meta row \(MetaKey.hnswHeader) is missing while \(chunks) chunks and \(nodes) graph nodes are stored")
            }
            return nil
        }
        guard let bytes = Data(base64Encoded: text) else {
            throw StoreError.corrupt(path: path, detail: "its meta row \(MetaKey.hnswHeader) is not base64")
        }
        return Array(bytes)
    }

    /// Writes the graph's header and the records of the slots that changed.
    package func putHNSW(header: [UInt8], nodes: [(slot: Int, record: [UInt8])]) throws {
        let put = try db.prepare("INSERT INTO hnsw_nodes(slot, record) VALUES(?, ?) ON CONFLICT(slot) DO UPDATE SET record = excluded.record")
        for node in nodes { try put.run([.int(Int64(node.slot)), .blob(Data(node.record))]) }
        try setMeta(MetaKey.hnswHeader, Data(header).base64EncodedString())
    }

    /// Calls `body` for every stored slot, ascending, with its record (borrowed).
    package func forEachHNSWNode(_ body: (_ slot: Int, _ record: UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT slot, record FROM hnsw_nodes ORDER BY slot")
        while try s.step() { try s.withBlob(1) { try body(Int(truncatingIfNeeded: s.int(0)), $0) } }
    }

    // MARK: - Sparse postings

    /// Writes one token's posting list; empty `data` deletes it.
    package func putPosting(tokenID: Int32, maxWeight: Float, data: Data) throws {
        if data.isEmpty {
            try db.prepare("DELETE FROM postings WHERE token_id = ?").run([.int(Int64(tokenID))])
        } else {
            try db.prepare("INSERT INTO postings(token_id, max_weight, data) VALUES(?, ?, ?) ON CONFLICT(token_id) DO UPDATE SET max_weight = excluded.max_weight, data = excluded.data")
                .run([.int(Int64(tokenID)), .double(Double(maxWeight)), .blob(data)])
        }
    }

    /// How many HNSW node records are stored (for reserving the graph before `forEachHNSWNode`).
    package func hnswNodeCount() throws -> Int {
        Int(try db.scalarInt("SELECT count(*) FROM hnsw_nodes") ?? 0)
    }

    /// How many tokens have a posting list (for reserving room before `forEachPosting`).
    package func postingListCount() throws -> Int {
        Int(try db.scalarInt("SELECT count(*) FROM postings") ?? 0)
    }

    /// Calls `body` for every posting list, by token, with its bytes (borrowed).
    package func forEachPosting(_ body: (Int32, UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT token_id, data FROM postings ORDER BY token_id")
        while try s.step() { try s.withBlob(1) { try body(Int32(truncatingIfNeeded: s.int(0)), $0) } }
    }

    /// Calls `body` with the posting list of each of `tokenIDs` that has one (bytes borrowed),
    /// through one prepared statement: what a query reads when the postings are loaded on
    /// demand. Tokens without a row are skipped.
    package func postings(tokenIDs: [Int32], _ body: (Int32, UnsafeRawBufferPointer) throws -> Void) throws {
        guard !tokenIDs.isEmpty else { return }
        let s = try db.prepare("SELECT data FROM postings WHERE token_id = ?")
        for token in tokenIDs {
            try s.bind([.int(Int64(token))])
            if try s.step() { try s.withBlob(0) { try body(token, $0) } }
        }
    }

    // MARK: - Codebooks

    /// A stored codebook (the ColBERT product quantiser is "colbert"), or nil. Indexes of
    /// format 1 opened read-only have no codebooks table and no codebooks.
    package func codebook(name: String) throws -> Data? {
        guard try hasTable("codebooks") else { return nil }
        let s = try db.prepare("SELECT data FROM codebooks WHERE name = ?")
        try s.bind([.text(name)])
        return try s.step() ? s.blob(0) : nil
    }

    package func putCodebook(name: String, data: Data) throws {
        try db.prepare("INSERT INTO codebooks(name, data) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data")
            .run([.text(name), .blob(data)])
    }

    func hasTable(_ name: String) throws -> Bool {
        let s = try db.prepare("SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?")
        try s.bind([.text(name)])
        return try s.step() && s.int(0) == 1
    }
}
