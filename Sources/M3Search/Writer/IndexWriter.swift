import Foundation
import M3Index
import M3Model
import M3Store

/// A document ready to store: chunked and encoded (by ingestion, outside every lock).
struct PreparedDocument {
    var path: String
    var size: Int64
    var mtime: Double
    var contentHash: String
    /// JSON object of string values; nil: none.
    var metadata: String?
    var chunks: [Chunk]
    var embeddings: [Embedding]
}

/// The index's one writer: it turns prepared documents and removals into one transaction
/// of the file and the matching change of the in-memory state.
///
/// Lock story:
/// - `lock` lets one write run at a time in this process (writes, weight changes,
///   checkpoints and taking the writer lock all hold it).
/// - Across processes, the index's `WriterLock` (an flock on `<index>.lock`) is taken before
///   the first write and held until `releaseWriteLock()` or the end of the SearchIndex: two
///   writers would overwrite each other's graph. Taking it reloads the state if another
///   process committed since it was read.
/// - Searches never wait for a write. The writer builds the next state on a private copy
///   of the published one (`IndexState.writable()`) while it writes the rows, stages it
///   before COMMIT and publishes it after (`transaction`), so a search sees the state
///   before the write or after it, never half of it. A failed write publishes nothing: the
///   published state still matches the rolled-back file.
final class IndexWriter: @unchecked Sendable {
    let path: String
    let settings: IndexSettings
    /// The writer's connection (read-only for a read-only index: every write then fails).
    let store: IndexStore
    let shared: SharedState
    private let lock = NSLock()
    /// The cross-process writer lock, once taken (read under `lock`).
    private(set) var writerLock: WriterLock?
    /// `store.dataVersion()` when the in-memory state was loaded: it changes when another
    /// process commits.
    private var loadedDataVersion: Int64
    /// ColBERT rows a PQ index waits for before training its codebook (k-means on fewer rows
    /// than a few per centroid learns the first documents, not the corpus). Until then rows
    /// are stored as float16 and scored exactly.
    var codebookMinimumRows = 4_096

    /// How the open graph holds its vectors; reloads keep it.
    private var graphEncoding: HNSWIndex.VectorEncoding { shared.read { $0.hnsw.encoding } }

    init(path: String, settings: IndexSettings, store: IndexStore, shared: SharedState) throws {
        self.path = path
        self.settings = settings
        self.store = store
        self.shared = shared
        loadedDataVersion = try store.dataVersion()
    }

    /// Runs `body` as the only write of this process.
    func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: - Writer lock

    /// Takes the index's writer lock for this writer (a no-op when it holds it).
    func lockForWriting(wait: Bool, onWait: ((WriterLock.Holder?) -> Void)?) throws {
        try exclusively { try takeWriterLock(wait: wait, onWait: onWait) }
    }

    func releaseWriteLock() {
        exclusively { writerLock = nil }
    }

    /// Takes the lock if not held yet. The caller holds `lock`.
    private func takeWriterLock(wait: Bool = false, onWait: ((WriterLock.Holder?) -> Void)? = nil) throws {
        guard writerLock == nil, !store.readOnly else { return }
        let taken = try WriterLock(indexPath: path, wait: wait, onWait: onWait)
        // Another process may have written since the state was loaded: the next commit
        // writes back from memory, so memory must match the file first.
        let version = try store.dataVersion()
        if version != loadedDataVersion {
            shared.publish(try IndexState.load(from: store, settings: settings, graphEncoding: graphEncoding))
            loadedDataVersion = version
        }
        writerLock = taken
    }

    // MARK: - Writes

    /// Adds documents, replacing those with the same path, in one transaction.
    func add(_ documents: [PreparedDocument]) throws {
        try commit(documents, removing: [])
    }

    /// Removes documents by path in one transaction; returns how many were present.
    func remove(_ paths: [String]) throws -> Int {
        try commit([], removing: paths)
    }

    /// The documents stored, as the writer sees them (after taking the writer lock, the
    /// file cannot change underneath).
    func storedDocuments() throws -> [DocumentRecord] {
        try exclusively { try store.documents() }
    }

    /// Records a document file's new size and mtime when its content did not change.
    func touch(_ document: DocumentRecord, size: Int64, mtime: Double) throws {
        try exclusively { try store.touchDocument(id: document.id, size: size, mtime: mtime) }
    }

    /// Writes documents (replacing same-path ones) and removals in one transaction, then
    /// persists the changed HNSW nodes and posting lists in it too. If anything fails the
    /// transaction rolls back and the published state, never touched, still matches the file.
    @discardableResult
    func commit(_ documents: [PreparedDocument], removing removals: [String]) throws -> Int {
        try exclusively {
            try takeWriterLock()
            // PQ storage: the write that brings the index to `codebookMinimumRows` rows
            // trains the codebook on all of them (before the transaction: k-means is slow)
            // and re-encodes the float16 rows stored so far, in its transaction.
            var newCodebook: ProductQuantizer?
            var reencoded: [(chunkID: Int64, blob: Data)] = []
            if settings.colbertStorage.needsCodebook && shared.current.codec.codebook == nil {
                (newCodebook, reencoded) = try trainCodebookIfDue(documents, replacing: Set(removals + documents.map(\.path)))
            }
            return try transaction { state in
                if let newCodebook {
                    try store.putCodebook(name: "colbert", data: Data(newCodebook.serialized()))
                    try store.replaceColBERT(reencoded)
                    state.codec = state.codec.with(codebook: newCodebook)
                }
                let removed = try apply(documents, removing: removals, to: &state)
                if state.hnsw.deletedCount > 0 { state.hnsw.compact() }
                return removed
            }
        }
    }

    /// One write of the file and the state: `body` changes a private copy of the published
    /// state and writes rows, all in one transaction that also persists the changed graph
    /// nodes and posting lists and counts the commit; the copy is published once committed.
    /// The caller holds `lock`, so the published state cannot change meanwhile.
    func transaction<T>(_ body: (inout IndexState) throws -> T) throws -> T {
        // Nested in another transaction, the COMMIT below would not be the real one, and
        // searches could pair this state with a file that does not hold it yet.
        guard !store.inTransaction else {
            throw M3SearchError(.other, "A write of the index state began inside another transaction of \(path); "
                                + "this is a bug in m3search: nothing was written.")
        }
        var next = shared.current.writable()
        do {
            let result = try store.write {
                // An index opened for searching reads postings on demand; a change needs them
                // all (and this transaction sees the commit the state mirrors: the writer lock
                // is held, and taking it reloaded any other process's commits).
                if next.sparse.isOnDemand { next.sparse = try IndexState.loadPostings(store) }
                let result = try body(&next)
                try persist(&next)
                next.commit = try store.commitCount() + 1
                try store.setCommitCount(next.commit)
                // Final from here on: searches whose read transaction sees this COMMIT read it.
                shared.stage(next)
                return result
            }
            shared.publish(next)
            return result
        } catch {
            shared.stage(nil)
            throw error
        }
    }

    /// The rows and in-memory changes of one write, inside its transaction.
    func apply(_ documents: [PreparedDocument], removing removals: [String], to state: inout IndexState) throws -> Int {
        var removed = 0
        for path in removals + documents.map(\.path) {
            guard let existing = try store.document(path: path) else { continue }
            for chunkID in try store.deleteDocument(id: existing.id) {
                state.hnsw.remove(id: chunkID)
                state.denseNorms[chunkID] = nil
                state.sparse.remove(document: chunkID)
            }
            state.documents[existing.id] = nil
            if removals.contains(path) { removed += 1 }
        }
        for doc in documents {
            let docID = try store.insertDocument(path: doc.path, size: doc.size, mtime: doc.mtime,
                                                 contentHash: doc.contentHash, metadata: doc.metadata)
            state.documents[docID] = DocumentInfo(path: doc.path, metadata: IndexState.decodeMetadata(doc.metadata))
            for (chunk, e) in zip(doc.chunks, doc.embeddings) {
                guard let dense = e.dense, let sv = e.sparse, let colbert = e.colbert else { continue }
                // Model outputs → M3Index codecs → the store; the graph gets the vector as stored.
                let blobs = state.codec.encode(dense: dense, sparse: sv, colbert: colbert)
                let chunkID = try store.insertChunk(
                    documentID: docID, ordinal: chunk.ordinal, charStart: chunk.charStart, charEnd: chunk.charEnd,
                    tokenCount: chunk.tokenIDs.count, text: chunk.text, dense: blobs.dense, sparse: blobs.sparse, colbert: blobs.colbert,
                    metadata: chunk.metadata)
                if settings.normalize {
                    try state.hnsw.insert(id: chunkID, vector: blobs.graphVector)
                } else {
                    let (direction, norm) = IndexState.direction(of: blobs.graphVector)
                    try state.hnsw.insert(id: chunkID, vector: direction)
                    state.denseNorms[chunkID] = norm
                }
                if !sv.isEmpty {
                    try state.sparse.add(document: chunkID, terms: zip(sv.ids, sv.weights).map { (token: $0, weight: $1) })
                }
            }
        }
        return removed
    }

    /// Writes the HNSW nodes and posting lists changed since the last commit.
    private func persist(_ state: inout IndexState) throws {
        let nodes = state.hnsw.dirtySlots.map { (slot: $0, record: state.hnsw.nodeRecord(slot: $0).storedBytes) }
        try store.putHNSW(header: state.hnsw.metaBytes(), nodes: nodes)
        for token in state.sparse.dirtyTokens {
            let bytes = state.sparse.postingBytes(token: token)
            try store.putPosting(tokenID: token, maxWeight: state.sparse.postings[token]?.maxWeight ?? 0, data: Data(bytes ?? []))
        }
        state.hnsw.clearDirty()
        state.sparse.clearDirty()
    }

    // MARK: - Weights and checkpoints

    /// Saves the default weights in the file (nil removes them) and uses them from now on.
    func setDefaultWeights(_ weights: FusionWeights?) throws {
        try exclusively {
            try store.setSavedWeights(weights.map { "\($0.dense),\($0.sparse),\($0.colbert)" })
            // Not a change searches pair with rows: the same commit, new weights.
            var next = shared.current
            next.savedWeights = weights
            shared.publish(next)
        }
    }

    /// Brings the graph image up to date (when the file can be written), then folds the
    /// write-ahead log into the file, after the write in progress.
    func checkpoint() throws {
        try exclusively {
            if !store.readOnly { try writeGraphImage() }
            try store.checkpoint()
        }
    }

    /// Stores the published graph as its image (`HNSWIndex+Image.swift`), so the next open
    /// copies it in bulk instead of reading every node record and dense vector; parts
    /// already stored unchanged (same checksum) are not rewritten, so after a small write
    /// mostly the links parts and the last rows part are. Skipped for unnormalised indexes
    /// (their norms are not in the image) and when the file holds a commit this state does
    /// not (another process wrote: its own checkpoint images it). Not a commit of the
    /// index: searches keep pairing with the same count. The caller holds `lock`.
    func writeGraphImage() throws {
        guard settings.normalize else { return }
        let state = shared.current
        try store.write {
            guard try store.hasGraphImageTable(), try store.commitCount() == state.commit else { return }
            let hnsw = state.hnsw
            let manifest = hnsw.imageManifest(commit: state.commit)
            let known = try store.graphImageChecksums()
            // The stored manifest stamps this very commit and header: the parts are this
            // state's already (a checkpoint with no write since, e.g. at `serve` shutdown).
            if store.graphImagePartIsStored(0, manifest.bytes, known: known) { return }
            for k in 0 ..< manifest.segments {
                let segment = hnsw.imageSegment(k, segmentSlots: manifest.segmentSlots)
                try store.putGraphImagePart(2 * k + 1, segment.links, known: known)
                try store.putGraphImagePart(2 * k + 2, segment.rows, known: known)
            }
            try store.deleteGraphImageParts(from: 2 * manifest.segments + 1)
            // Last: the stamp that makes the parts current.
            try store.putGraphImagePart(0, manifest.bytes, known: known)
        }
    }
}
