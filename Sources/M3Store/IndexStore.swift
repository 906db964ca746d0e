import CSQLite
import Foundation

/// The settings an index is built with. An index refuses to open with other settings,
/// because its vectors would not be comparable with the new query vectors.
public struct IndexSettings: Codable, Equatable, Sendable {
    /// Identity of the model (hash of config and weights), see `BGEM3.identity`.
    public var modelID: String
    public var dimension: Int
    public var maxLength: Int
    public var overlap: Int
    public var pooling: String
    public var normalize: Bool
    public var hnswM: Int
    public var hnswEfConstruction: Int
    /// How ColBERT rows are stored: "f16", "int8", "binary" or "pq<n>" (see M3Search.ColBERTStorage).
    public var colbertStorage: String
    /// How dense vectors are stored: "f32", "f16" or "int8".
    public var denseStorage: String
    /// Which ColBERT rows are kept: "none" or "near-duplicates:<cos>".
    public var colbertPrune: String

    public init(modelID: String, dimension: Int, maxLength: Int = 512, overlap: Int = 64, pooling: String = "cls",
                normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200, colbertStorage: String = "f16",
                denseStorage: String = "f32", colbertPrune: String = "none") {
        self.modelID = modelID
        self.dimension = dimension
        self.maxLength = maxLength
        self.overlap = overlap
        self.pooling = pooling
        self.normalize = normalize
        self.hnswM = hnswM
        self.hnswEfConstruction = hnswEfConstruction
        self.colbertStorage = colbertStorage
        self.denseStorage = denseStorage
        self.colbertPrune = colbertPrune
    }

    /// Settings written before a key existed decode with the value that was then implied
    /// (float16 ColBERT, float32 dense, no pruning).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelID = try c.decode(String.self, forKey: .modelID)
        dimension = try c.decode(Int.self, forKey: .dimension)
        maxLength = try c.decode(Int.self, forKey: .maxLength)
        overlap = try c.decode(Int.self, forKey: .overlap)
        pooling = try c.decode(String.self, forKey: .pooling)
        normalize = try c.decode(Bool.self, forKey: .normalize)
        hnswM = try c.decode(Int.self, forKey: .hnswM)
        hnswEfConstruction = try c.decode(Int.self, forKey: .hnswEfConstruction)
        colbertStorage = try c.decodeIfPresent(String.self, forKey: .colbertStorage) ?? "f16"
        denseStorage = try c.decodeIfPresent(String.self, forKey: .denseStorage) ?? "f32"
        colbertPrune = try c.decodeIfPresent(String.self, forKey: .colbertPrune) ?? "none"
    }

    /// The first setting that differs, described for an error message; nil when equal.
    public func firstDifference(from other: IndexSettings) -> String? {
        if modelID != other.modelID { return "model \(modelID.prefix(16))… vs \(other.modelID.prefix(16))…" }
        if dimension != other.dimension { return "dimension \(dimension) vs \(other.dimension)" }
        if maxLength != other.maxLength { return "max length \(maxLength) vs \(other.maxLength)" }
        if overlap != other.overlap { return "overlap \(overlap) vs \(other.overlap)" }
        if pooling != other.pooling { return "pooling \(pooling) vs \(other.pooling)" }
        if normalize != other.normalize { return "normalize \(normalize) vs \(other.normalize)" }
        if colbertStorage != other.colbertStorage { return "ColBERT storage \(colbertStorage) vs \(other.colbertStorage)" }
        if denseStorage != other.denseStorage { return "dense storage \(denseStorage) vs \(other.denseStorage)" }
        if colbertPrune != other.colbertPrune { return "ColBERT pruning \(colbertPrune) vs \(other.colbertPrune)" }
        return nil
    }
}

/// A document row: one indexed file or one document added through the library.
public struct DocumentRecord: Sendable, Equatable {
    public var id: Int64
    public var path: String
    public var size: Int64
    public var mtime: Double
    public var contentHash: String
    public var metadata: String?
}

/// A chunk row: a token window of a document, with its character range in the source.
public struct ChunkRecord: Sendable {
    public var id: Int64
    public var documentID: Int64
    public var ordinal: Int
    public var charStart: Int
    public var charEnd: Int
    public var tokenCount: Int
    public var text: String
}

/// The index file: one SQLite database holding documents, chunks, vectors, the HNSW
/// graph and the sparse postings. See Indexes/FORMAT.md.
///
/// Not thread-safe: the search engine serialises writes and gives readers their own
/// read-only connection.
public final class IndexStore: @unchecked Sendable {
    public static let magic = "m3search-index"
    public static let formatVersion = 2

    public let path: String
    public let db: SQLiteConnection
    public let readOnly: Bool

    /// Opens an existing index, or creates one when `create` is given settings.
    /// Throws `StoreError.notAnIndex` for a foreign file, `.newerFormat`, `.missing`.
    public init(path: String, readOnly: Bool = false, createWith settings: IndexSettings? = nil) throws {
        self.path = path
        self.readOnly = readOnly
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && settings == nil { throw StoreError.missing(path: path) }
        if exists {
            // Refuse a non-SQLite file before SQLite touches it.
            if let handle = FileHandle(forReadingAtPath: path) {
                let header = handle.readData(ofLength: 16)
                try? handle.close()
                if !header.isEmpty && header != Data("SQLite format 3\u{0}".utf8) {
                    throw StoreError.notAnIndex(path: path, detail: "not an SQLite database")
                }
            }
        }
        db = try Self.connect(path: path, readOnly: readOnly, create: !exists)
        if !readOnly {
            try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
        }
        let tables = try tableNames()
        if tables.isEmpty {
            // An empty database is an index whose creation never committed (e.g. a killed
            // first run): creating it now loses nothing; without settings it is just absent.
            guard let settings, !readOnly else { throw StoreError.missing(path: path) }
            try create(settings)
        } else {
            guard tables.contains("m3_meta") else {
                throw StoreError.notAnIndex(path: path, detail: "SQLite database without m3search tables: \(tables.sorted().prefix(5).joined(separator: ", "))")
            }
            guard try meta("magic") == Self.magic else {
                throw StoreError.notAnIndex(path: path, detail: "missing m3search magic")
            }
            let version = Int(try meta("format_version") ?? "") ?? 0
            if version > Self.formatVersion {
                throw StoreError.newerFormat(path: path, found: version, supported: Self.formatVersion)
            }
            if version < Self.formatVersion && !readOnly { try migrate(from: version) }
        }
    }

    /// A read-only connection to a WAL index needs its `-shm` file; on read-only media
    /// where that file is gone (SQLite deletes it when the last writer closes) and cannot
    /// be created, the file is opened immutable instead: nobody can be writing it there.
    private static func connect(path: String, readOnly: Bool, create: Bool) throws -> SQLiteConnection {
        guard readOnly else { return try SQLiteConnection(path: path, mode: create ? .create : .readWrite) }
        let connection = try SQLiteConnection(path: path, mode: .readOnly)
        do {
            _ = try connection.scalarInt("SELECT count(*) FROM sqlite_master")
            return connection
        } catch StoreError.sqlite(_, let code, _, _) where (code == SQLITE_CANTOPEN || code == SQLITE_READONLY)
                    && access((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, W_OK) != 0 {
            // Only where nobody could be writing: the folder itself is not writable (a
            // read-only mount, where even root gets EROFS). Elsewhere an immutable open
            // could read a file mid-write.
            let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? NSNumber)?.intValue ?? 0
            guard wal == 0 else {
                throw StoreError.sqlite(path: path, code: code, message: "its write-ahead log (\(path)-wal) holds changes not yet "
                    + "folded into the file, and its folder is read-only; open it once where it is writable", sql: nil)
            }
            return try SQLiteConnection(path: path, mode: .immutable)
        }
    }

    private func tableNames() throws -> Set<String> {
        let s = try db.prepare("SELECT name FROM sqlite_master WHERE type='table'")
        var names = Set<String>()
        while try s.step() { names.insert(s.text(0)) }
        return names
    }

    /// Named migrations, applied in order inside one transaction.
    static let migrations: [(version: Int, name: String, sql: String)] = [
        (1, "create tables", """
        CREATE TABLE m3_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            content_hash TEXT NOT NULL,
            metadata TEXT,
            indexed_at REAL NOT NULL);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            token_count INTEGER NOT NULL,
            text TEXT NOT NULL,
            dense BLOB NOT NULL,
            sparse BLOB NOT NULL,
            colbert BLOB NOT NULL);
        CREATE INDEX chunks_by_document ON chunks(document_id);
        CREATE TABLE hnsw_nodes (slot INTEGER PRIMARY KEY, record BLOB NOT NULL);
        CREATE TABLE postings (token_id INTEGER PRIMARY KEY, max_weight REAL NOT NULL, data BLOB NOT NULL);
        """),
        (2, "codebooks", """
        CREATE TABLE codebooks (name TEXT PRIMARY KEY, data BLOB NOT NULL);
        """),
    ]

    private func create(_ settings: IndexSettings) throws {
        try db.transaction {
            for m in Self.migrations { try db.execute(m.sql) }
            try setMeta("magic", Self.magic)
            try setMeta("format_version", String(Self.formatVersion))
            let json = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
            try setMeta("settings", json)
            try setMeta("created_at", String(Date().timeIntervalSince1970))
        }
    }

    private func migrate(from version: Int) throws {
        try db.transaction {
            for m in Self.migrations where m.version > version { try db.execute(m.sql) }
            try setMeta("format_version", String(Self.formatVersion))
        }
    }

    // MARK: - Meta

    public func meta(_ key: String) throws -> String? {
        let s = try db.prepare("SELECT value FROM m3_meta WHERE key = ?")
        try s.bind([.text(key)])
        return try s.step() ? s.text(0) : nil
    }

    public func setMeta(_ key: String, _ value: String) throws {
        try db.prepare("INSERT INTO m3_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .run([.text(key), .text(value)])
    }

    /// Folds the write-ahead log into the database file and truncates it. A run of large
    /// commits leaves a WAL as big as its largest commit, and every later page read searches
    /// it (rescoring at 100k chunks took 1.6× as long with a 200 MB WAL). Busy readers make it
    /// a partial checkpoint, which is harmless.
    public func checkpoint() throws {
        try db.execute("PRAGMA wal_checkpoint(TRUNCATE);")
    }

    public func settings() throws -> IndexSettings {
        guard let json = try meta("settings"),
              let s = try? JSONDecoder().decode(IndexSettings.self, from: Data(json.utf8)) else {
            throw StoreError.corrupt(path: path, detail: "settings missing or unreadable")
        }
        return s
    }

    // MARK: - Documents

    public func documents() throws -> [DocumentRecord] {
        let s = try db.prepare("SELECT id, path, size, mtime, content_hash, metadata FROM documents ORDER BY id")
        var out: [DocumentRecord] = []
        while try s.step() { out.append(Self.document(s)) }
        return out
    }

    public func document(path: String) throws -> DocumentRecord? {
        let s = try db.prepare("SELECT id, path, size, mtime, content_hash, metadata FROM documents WHERE path = ?")
        try s.bind([.text(path)])
        return try s.step() ? Self.document(s) : nil
    }

    private static func document(_ s: Statement) -> DocumentRecord {
        DocumentRecord(id: s.int(0), path: s.text(1), size: s.int(2), mtime: s.double(3),
                       contentHash: s.text(4), metadata: s.isNull(5) ? nil : s.text(5))
    }

    public func insertDocument(path: String, size: Int64, mtime: Double, contentHash: String, metadata: String?) throws -> Int64 {
        try db.prepare("INSERT INTO documents(path, size, mtime, content_hash, metadata, indexed_at) VALUES(?, ?, ?, ?, ?, ?)")
            .run([.text(path), .int(size), .double(mtime), .text(contentHash), metadata.map { .text($0) } ?? .null,
                  .double(Date().timeIntervalSince1970)])
        return db.lastInsertRowID
    }

    public func touchDocument(id: Int64, size: Int64, mtime: Double) throws {
        try db.prepare("UPDATE documents SET size = ?, mtime = ? WHERE id = ?").run([.int(size), .double(mtime), .int(id)])
    }

    /// Deletes a document and its chunks; returns the removed chunk ids.
    public func deleteDocument(id: Int64) throws -> [Int64] {
        let ids = try chunkIDs(documentID: id)
        try db.prepare("DELETE FROM chunks WHERE document_id = ?").run([.int(id)])
        try db.prepare("DELETE FROM documents WHERE id = ?").run([.int(id)])
        return ids
    }

    public func chunkIDs(documentID: Int64) throws -> [Int64] {
        let s = try db.prepare("SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal")
        try s.bind([.int(documentID)])
        var ids: [Int64] = []
        while try s.step() { ids.append(s.int(0)) }
        return ids
    }

    // MARK: - Chunks

    public func insertChunk(documentID: Int64, ordinal: Int, charStart: Int, charEnd: Int, tokenCount: Int,
                            text: String, dense: Data, sparse: Data, colbert: Data) throws -> Int64 {
        try db.prepare("""
            INSERT INTO chunks(document_id, ordinal, char_start, char_end, token_count, text, dense, sparse, colbert)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).run([.int(documentID), .int(Int64(ordinal)), .int(Int64(charStart)), .int(Int64(charEnd)),
                      .int(Int64(tokenCount)), .text(text), .blob(dense), .blob(sparse), .blob(colbert)])
        return db.lastInsertRowID
    }

    public func chunk(id: Int64) throws -> ChunkRecord? {
        let s = try db.prepare("SELECT id, document_id, ordinal, char_start, char_end, token_count, text FROM chunks WHERE id = ?")
        try s.bind([.int(id)])
        guard try s.step() else { return nil }
        return ChunkRecord(id: s.int(0), documentID: s.int(1), ordinal: Int(s.int(2)), charStart: Int(s.int(3)),
                           charEnd: Int(s.int(4)), tokenCount: Int(s.int(5)), text: s.text(6))
    }

    /// Calls `body` for every chunk with its id, document id and vector blobs (borrowed bytes).
    public func forEachChunkVectors(_ body: (Int64, Int64, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT id, document_id, dense, sparse FROM chunks ORDER BY id")
        while try s.step() {
            try s.withBlob(2) { dense in try s.withBlob(3) { sparse in try body(s.int(0), s.int(1), dense, sparse) } }
        }
    }

    /// The ColBERT blob of one chunk.
    public func colbert(chunkID: Int64) throws -> Data? {
        let s = try db.prepare("SELECT colbert FROM chunks WHERE id = ?")
        try s.bind([.int(chunkID)])
        return try s.step() ? s.blob(0) : nil
    }

    public func counts() throws -> (documents: Int, chunks: Int) {
        (Int(try db.scalarInt("SELECT count(*) FROM documents") ?? 0), Int(try db.scalarInt("SELECT count(*) FROM chunks") ?? 0))
    }

    // MARK: - Codebooks

    /// A stored codebook (the ColBERT product quantiser is "colbert"), or nil. Indexes of
    /// format 1 opened read-only have no codebooks table and no codebooks.
    public func codebook(name: String) throws -> Data? {
        guard try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='codebooks'") == 1 else { return nil }
        let s = try db.prepare("SELECT data FROM codebooks WHERE name = ?")
        try s.bind([.text(name)])
        return try s.step() ? s.blob(0) : nil
    }

    public func putCodebook(name: String, data: Data) throws {
        try db.prepare("INSERT INTO codebooks(name, data) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data")
            .run([.text(name), .blob(data)])
    }

    // MARK: - HNSW graph and postings

    public func putHNSWNode(slot: Int, record: Data) throws {
        try db.prepare("INSERT INTO hnsw_nodes(slot, record) VALUES(?, ?) ON CONFLICT(slot) DO UPDATE SET record = excluded.record")
            .run([.int(Int64(slot)), .blob(record)])
    }

    public func forEachHNSWNode(_ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT slot, record FROM hnsw_nodes ORDER BY slot")
        while try s.step() { try s.withBlob(1) { try body(Int(s.int(0)), $0) } }
    }

    public func putPosting(tokenID: Int32, maxWeight: Float, data: Data) throws {
        if data.isEmpty {
            try db.prepare("DELETE FROM postings WHERE token_id = ?").run([.int(Int64(tokenID))])
        } else {
            try db.prepare("INSERT INTO postings(token_id, max_weight, data) VALUES(?, ?, ?) ON CONFLICT(token_id) DO UPDATE SET max_weight = excluded.max_weight, data = excluded.data")
                .run([.int(Int64(tokenID)), .double(Double(maxWeight)), .blob(data)])
        }
    }

    public func forEachPosting(_ body: (Int32, UnsafeRawBufferPointer) throws -> Void) throws {
        let s = try db.prepare("SELECT token_id, data FROM postings ORDER BY token_id")
        while try s.step() { try s.withBlob(1) { try body(Int32(truncatingIfNeeded: s.int(0)), $0) } }
    }

    /// SQLite's own integrity check: "ok" or the problems found.
    public func integrityCheck() throws -> [String] {
        let s = try db.prepare("PRAGMA integrity_check")
        var out: [String] = []
        while try s.step() { out.append(s.text(0)) }
        return out
    }
}
