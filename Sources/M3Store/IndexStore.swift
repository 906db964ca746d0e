import CSQLite
import Foundation

/// The index file: one SQLite database holding documents, chunks, their vector blobs, the
/// HNSW node records, the sparse postings and the codebooks (layout: docs/FORMAT.md).
///
/// Every SQL statement of m3search is in this module: the rest of the package asks the
/// store by name (`documents()`, `chunkScoringRows(ids:colbert:_:)`, `putHNSW(header:nodes:)`,
/// …) and groups calls in scoped transactions:
///
/// ```swift
/// let store = try IndexStore(path: "notes.m3index", createWith: settings)
/// let id = try store.write { try store.insertDocument(path: "a.md", size: 3, mtime: 0, contentHash: "h", metadata: nil) }
/// let paths = try store.read { try store.documents().map(\.path) }   // one consistent snapshot
/// ```
///
/// The store never interprets a blob: vectors, node records and postings are bytes that
/// M3Index encodes and decodes.
///
/// Not thread-safe: one connection per store. The search engine gives its writer and each
/// reader their own store and serialises access to each.
package final class IndexStore: @unchecked Sendable {
    package static let magic = "m3search-index"
    package static let formatVersion = 4

    package let path: String
    /// The connection: internal, so M3Store's files share it and no other module can run SQL.
    let db: SQLiteConnection
    package let readOnly: Bool
    /// False for a format-2 file opened read-only (not migrated): its chunks have no
    /// metadata column, and queries read NULL in its place.
    private(set) var hasChunkMetadata = true

    /// Opens an existing index, or creates one when `createWith` gives the settings record.
    /// Throws `StoreError.notAnIndex` for a foreign file, `.newerFormat`, `.missing`.
    package init(path: String, readOnly: Bool = false, createWith settings: StoredSettings? = nil) throws {
        self.path = path
        self.readOnly = readOnly
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && settings == nil { throw StoreError.missing(path: path) }
        // Only regular files: a directory or a FIFO as --index gets a clear error, not a hang.
        if exists { try Self.requireRegularFile(path) }
        // Refuse a non-SQLite file before SQLite touches it (SQLite would write its own
        // header over a file shorter than one). A file this process already has open passed.
        if exists, let header = OpenDatabaseFiles.headerIfUnopened(path, count: 16),
           !header.isEmpty, header != Data("SQLite format 3\u{0}".utf8) {
            throw StoreError.notAnIndex(path: path, detail: "not an SQLite database")
        }
        db = try Self.connect(path: path, readOnly: readOnly, create: !exists)
        // Nothing in the file may make opening it spin (a recursive view, say): every
        // statement until the schema is verified runs under a time limit.
        try db.withTimeLimit(seconds: Self.openTimeLimit) { try openOrCreate(settings) }
        // Outside the time limit: an index from before row checksums gets them once, which
        // takes a pass over its chunks.
        if !readOnly { try ensureChecksums() }
    }

    private func openOrCreate(_ settings: StoredSettings?) throws {
        if !readOnly {
            do {
                try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            } catch StoreError.sqlite(_, let code, _, _) where code == SQLITE_CANTOPEN || code == SQLITE_READONLY {
                // A writer needs the write-ahead log beside the file: say why it cannot have it.
                if let why = Self.unwritableReason(path) { throw StoreError.readOnly(path: path, detail: why) }
                throw StoreError.sqlite(path: path, code: code, message: "cannot open its write-ahead log", sql: nil)
            }
        }
        let tables = try tableNames()
        if tables.isEmpty {
            // An empty database is an index whose creation never committed (e.g. a killed
            // first run): creating it now loses nothing; without settings it is just absent.
            guard let settings, !readOnly else { throw StoreError.missing(path: path) }
            try create(settings)
        } else {
            // Magic and version from a verified m3_meta, then the whole schema against the
            // version's, before any other query runs.
            let version = try Self.readFormatVersion(of: db, path: path)
            try verifySchema(formatVersion: version)
            if version < Self.formatVersion && !readOnly { try migrate(from: version) }
            if version < 3 && readOnly { hasChunkMetadata = false }
        }
    }

    /// A read-only connection to a WAL index needs its `-shm` file; on read-only media
    /// where that file is gone (SQLite deletes it when the last writer closes) and cannot
    /// be created, the file is opened immutable instead: nobody can be writing it there.
    static func connect(path: String, readOnly: Bool, create: Bool) throws -> SQLiteConnection {
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

    /// Why the index's folder or file cannot be written (read-only file system, permissions),
    /// or nil when both can.
    private static func unwritableReason(_ path: String) -> String? {
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        for target in [folder, path] where access(target, W_OK) != 0 {
            let code = errno
            return code == EROFS ? "it is on a read-only file system" : "\(target) is not writable (\(String(cString: strerror(code))))"
        }
        return nil
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
        // Where a chunk sits in its source ({"page": "3"}, {"section": "Introduction"}): a
        // JSON object of strings, NULL for plain text. Old rows keep NULL.
        (3, "chunk metadata", """
        ALTER TABLE chunks ADD COLUMN metadata TEXT;
        """),
        // The graph image (IndexStore+GraphImage.swift): the HNSW graph as a few large
        // blobs, so an open copies it in bulk. Empty until the first checkpoint.
        (4, "graph image", """
        CREATE TABLE graph_image (part INTEGER PRIMARY KEY, checksum INTEGER NOT NULL, data BLOB NOT NULL);
        """),
    ]

    private func create(_ settings: StoredSettings) throws {
        try db.transaction {
            for m in Self.migrations { try db.execute(m.sql) }
            try db.execute(Self.checksumTableSQL)
            try setMeta(MetaKey.magic, Self.magic)
            try setMeta(MetaKey.formatVersion, String(Self.formatVersion))
            let json = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
            try setMeta(MetaKey.settings, json)
            try setMeta(MetaKey.createdAt, String(Date().timeIntervalSince1970))
        }
    }

    private func migrate(from version: Int) throws {
        try db.transaction {
            for m in Self.migrations where m.version > version { try db.execute(m.sql) }
            try setMeta(MetaKey.formatVersion, String(Self.formatVersion))
        }
    }

    // MARK: - Transactions

    /// Runs `body` in one read transaction: every read inside sees the same committed state
    /// (WAL snapshot isolation), whatever other connections commit meanwhile. Called inside
    /// a transaction of this store, `body` joins it.
    ///
    /// Throws what `body` throws, and `StoreError` when SQLite cannot begin or end it.
    package func read<T>(_ body: () throws -> T) throws -> T {
        if db.inTransaction { return try body() }
        return try db.transaction(immediate: false, body)
    }

    /// Runs `body` in one write transaction, taken immediately (other writers wait up to the
    /// busy timeout): committed when `body` returns, rolled back when it throws. Called
    /// inside a transaction of this store, `body` joins it.
    package func write<T>(_ body: () throws -> T) throws -> T {
        if db.inTransaction { return try body() }
        return try db.transaction(immediate: true, body)
    }

    /// Whether a transaction of this store is open.
    package var inTransaction: Bool { db.inTransaction }

    /// A number that changes when another connection commits to the file (SQLite's
    /// `data_version`; commits on this connection leave it unchanged).
    package func dataVersion() throws -> Int64 {
        try db.scalarInt("PRAGMA data_version") ?? 0
    }

    /// Folds the write-ahead log into the database file and truncates it. A run of large
    /// commits leaves a WAL as big as its largest commit, and every later page read searches
    /// it (rescoring at 100k chunks took 1.6× as long with a 200 MB WAL). Busy readers make it
    /// a partial checkpoint, which is harmless.
    package func checkpoint() throws {
        try db.execute("PRAGMA wal_checkpoint(TRUNCATE);")
    }

    /// SQLite's own integrity check: "ok" or the problems found.
    package func integrityCheck() throws -> [String] {
        let s = try db.prepare("PRAGMA integrity_check")
        var out: [String] = []
        while try s.step() { out.append(s.text(0)) }
        return out
    }

    // MARK: - Meta

    /// Keys of the meta table (docs/FORMAT.md).
    package enum MetaKey {
        package static let magic = "magic"
        package static let formatVersion = "format_version"
        package static let settings = "settings"
        package static let createdAt = "created_at"
        package static let hnswHeader = "hnsw_header"
        package static let defaultWeights = "default_weights"
        package static let commitCount = "commit_count"
    }

    /// How many writes of the index state have committed (0 for files from before the
    /// count): searches match their read transaction to the in-memory state of that commit.
    package func commitCount() throws -> Int64 {
        try meta(MetaKey.commitCount).flatMap { Int64($0) } ?? 0
    }

    /// Records the count of the write committing now (inside its transaction).
    package func setCommitCount(_ count: Int64) throws {
        try setMeta(MetaKey.commitCount, String(count))
    }

    package func meta(_ key: String) throws -> String? {
        let s = try db.prepare("SELECT value FROM m3_meta WHERE key = ?")
        try s.bind([.text(key)])
        return try s.step() ? s.text(0) : nil
    }

    package func setMeta(_ key: String, _ value: String) throws {
        try db.prepare("INSERT INTO m3_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .run([.text(key), .text(value)])
    }

    package func removeMeta(_ key: String) throws {
        try db.prepare("DELETE FROM m3_meta WHERE key = ?").run([.text(key)])
    }

    /// The settings record the index was created with.
    /// Throws `StoreError.corrupt` when it is missing or not the expected JSON.
    package func settings() throws -> StoredSettings {
        guard let json = try meta(MetaKey.settings),
              let s = try? JSONDecoder().decode(StoredSettings.self, from: Data(json.utf8)) else {
            throw StoreError.corrupt(path: path, detail: "settings missing or unreadable")
        }
        return s
    }

    /// Replaces the model identity in the settings record when it still is `old` (the
    /// first-generation identity older m3search recorded, which the model has recognised as
    /// its own); every other setting keeps its value. Returns false, changing nothing, when
    /// the record holds another identity by now (another process replaced it first). Call
    /// it inside `write`, so that reading and replacing the record are one transaction.
    package func replaceModelID(_ old: String, with new: String) throws -> Bool {
        var record = try settings()
        guard record.modelID == old else { return false }
        record.modelID = new
        try setMeta(MetaKey.settings, String(decoding: try JSONEncoder().encode(record), as: UTF8.self))
        return true
    }

    /// The default fusion weights saved in the file ("dense,sparse,colbert"), or nil.
    package func savedWeights() throws -> String? { try meta(MetaKey.defaultWeights) }

    /// Saves the default fusion weights as text; nil removes them.
    package func setSavedWeights(_ text: String?) throws {
        if let text { try setMeta(MetaKey.defaultWeights, text) } else { try removeMeta(MetaKey.defaultWeights) }
    }
}
