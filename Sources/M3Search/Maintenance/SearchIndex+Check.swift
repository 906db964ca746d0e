import Foundation
import M3Index
import M3Store

/// What `check` found: empty `problems` means the index is sound.
public struct IntegrityReport: Sendable {
    public var documents = 0
    public var chunks = 0
    public var problems: [String] = []
    /// Worth knowing but not damage (e.g. a graph image a write made stale).
    public var notes: [String] = []
    public var isSound: Bool { problems.isEmpty }
}

extension SearchIndex {
    /// Verifies the whole index: SQLite's integrity check, the HNSW graph's invariants,
    /// every chunk present in the graph and (when it has sparse weights) in the postings
    /// with the same weights, no graph node or posting without its chunk, and every
    /// chunk's vectors decodable with the right sizes. The graph checked is loaded row by
    /// row (the source of truth); the graph image is checked against it: every part's
    /// checksum, the manifest's stamp (a stale one is a note), and for a current image the
    /// graph it opens as, slot by slot.
    ///
    /// It checks the file as it is now, all from one snapshot (a read transaction), so a
    /// writer committing meanwhile, in another process, cannot cause false reports; this
    /// process's writes wait for it. A writer's in-memory graph, postings and document table
    /// must match its sizes too. Problems are reported, not thrown; throws `M3SearchError`
    /// only when the file cannot be read at all.
    public func check() throws -> IntegrityReport {
        try M3SearchError.boundary { try writer.check() }
    }
}

extension IndexWriter {
    func check() throws -> IntegrityReport {
        var report = IntegrityReport()
        try exclusively {
            // A file too damaged for SQLite to walk is a finding too: report it, don't throw.
            do {
                let sqlite = try store.integrityCheck()
                if sqlite != ["ok"] { report.problems += sqlite.prefix(20).map { "SQLite: \($0)" } }
            } catch let error as StoreError {
                report.problems.append("\(error)")
                return
            }
            do {
                try shared.read { current in
                    try store.read {
                        let snapshot: IndexState
                        do {
                            snapshot = try IndexState.load(from: store, settings: settings, graphEncoding: current.hnsw.encoding,
                                                           useImage: false)
                        } catch {
                            report.problems.append("\(error)")
                            return
                        }
                        if writerLock != nil, snapshot.hnsw.count != current.hnsw.count
                            || (!current.sparse.isOnDemand && snapshot.sparse.documentCount != current.sparse.documentCount)
                            || snapshot.documents.count != current.documents.count {
                            report.problems.append("the writer's in-memory graph or postings differ from the file")
                        }
                        // A damaged schema (a renamed column, say) fails the queries themselves:
                        // that is a finding, not a reason to stop checking without a report.
                        do { try check(snapshot, into: &report) } catch {
                            report.problems.append("\(error)")
                        }
                        do {
                            let image = try IndexState.verifyGraphImage(store, settings: settings, reference: snapshot.hnsw)
                            report.problems += image.problems
                            report.notes += image.notes
                        } catch {
                            report.problems.append("graph image: \(error)")
                        }
                    }
                }
            } catch let error as StoreError {
                report.problems.append("\(error)")
            }
        }
        if report.problems.count > 50 { report.problems = Array(report.problems.prefix(50)) + ["…"] }
        return report
    }

    private func check(_ state: IndexState, into report: inout IntegrityReport) throws {
        let hnsw = state.hnsw, sparse = state.sparse, codec = state.codec
        do { _ = try hnsw.checkIntegrity() } catch { report.problems.append("HNSW: \(error)") }
        var chunkIDs = Set<Int64>()
        let dim = settings.dimension
        // Stored vectors carry no checksum, but normalised ones must have length 1: a
        // flipped sign, exponent or high mantissa bit breaks that (a low mantissa bit
        // moves scores by less than the tolerance). Float16 ColBERT rows get more slack.
        // Quantised storage moves the norm further (int8 by up to a few percent at small
        // dimensions); sign bits and PQ centroids keep no norm, so their rows are not checked.
        let denseSlack: Float = codec.dense == .f32 ? 1e-3 : codec.dense == .f16 ? 1e-2 : 5e-2
        let rowStorage = codec.colbertRows
        let colbertSlack: Float? = rowStorage == .float16 ? 1e-2 : rowStorage == .int8 ? 5e-2 : nil
        let unitTolerance: (dense: Float, colbert: Float?)? = settings.normalize ? (denseSlack, colbertSlack) : nil
        func isUnit(_ v: ArraySlice<Float>, _ tolerance: Float) -> Bool {
            abs(v.reduce(0) { $0 + $1 * $1 }.squareRoot() - 1) <= tolerance
        }
        try store.forEachChunk { row in
            let c = row.chunk
            let id = c.id
            chunkIDs.insert(id)
            if state.documents[c.documentID] == nil { report.problems.append("chunk \(id) belongs to no document") }
            // Decoded as stored (not rescaled to unit length): the norm is what is checked.
            if let dense = VectorCoding.decodeDense(row.dense, dimension: dim, storage: codec.dense) {
                if let t = unitTolerance, !isUnit(dense[...], t.dense) { report.problems.append("chunk \(id): dense vector is not unit length") }
            } else {
                report.problems.append("chunk \(id): dense vector has the wrong size")
            }
            if c.text.unicodeScalars.count != c.charEnd &- c.charStart {
                report.problems.append("chunk \(id): text length disagrees with its character range")
            }
            if !hnsw.contains(id: id) { report.problems.append("chunk \(id) is missing from the HNSW graph") }
            // Metadata is outside the row checksums, and reads turn what does not decode into
            // no metadata: only here does damage to it show.
            if let m = c.metadata, IndexState.decodeMetadata(m) == nil {
                report.problems.append("chunk \(id): its metadata is not a JSON object of strings")
            }
            guard let sv = VectorCoding.decodeSparse(row.sparse) else {
                report.problems.append("chunk \(id): sparse vector unreadable")
                return
            }
            for (token, w) in zip(sv.ids, sv.weights) where sparse.weight(document: id, token: token) != w {
                report.problems.append("chunk \(id): posting for token \(token) disagrees with the chunk")
                break
            }
            let rows = codec.colbertRowCount(row.colbert)
            if let slack = unitTolerance?.colbert, let m = codec.decodeColBERT(row.colbert),
               let bad = (0 ..< m.count).first(where: { !isUnit(m.values[$0 * dim ..< ($0 + 1) * dim], slack) }) {
                report.problems.append("chunk \(id): ColBERT row \(bad) is not unit length")
            }
            let tokens = c.tokenCount
            // Pruning drops rows; without it there is one per token after <s>.
            let expected = codec.pruning == .none ? (tokens - 1)...(tokens - 1) : min(1, tokens - 1)...(tokens - 1)
            if !(rows.map { expected.contains($0) } ?? false) {
                report.problems.append("chunk \(id): \(rows.map(String.init) ?? "unreadable") ColBERT rows for \(tokens) tokens")
            }
        }
        for d in try store.documents() where d.metadata.map({ IndexState.decodeMetadata($0) == nil }) ?? false {
            report.problems.append("document \(d.path): its metadata is not a JSON object of strings")
        }
        report.chunks = chunkIDs.count
        report.documents = state.documents.count
        if hnsw.count != chunkIDs.count {
            report.problems.append("HNSW holds \(hnsw.count) live nodes for \(chunkIDs.count) chunks")
        }
        if sparse.documentCount > chunkIDs.count {
            report.problems.append("postings reference \(sparse.documentCount) chunks, the file holds \(chunkIDs.count)")
        }
    }
}

/// What the schema check of an index file found (see `SearchIndex.inspectSchema(at:)`).
public struct SchemaReport: Sendable {
    /// Objects m3search did not create (a trigger, a view, an extra index or table), e.g.
    /// "trigger wipe on chunks": `removeForeignSchemaObjects(at:)` drops them.
    public var foreign: [String]
    /// Own objects missing or altered (e.g. "view chunks is not the one m3search creates"):
    /// only a rebuild restores them.
    public var damaged: [String]
    public var isSound: Bool { foreign.isEmpty && damaged.isEmpty }
}

extension SearchIndex {
    /// Compares the schema of the index at `path` with the one m3search creates for its
    /// format version, without opening it as an index (which refuses any difference). Runs
    /// nothing the file defines. Throws `M3SearchError` when the file is not an index.
    public static func inspectSchema(at path: String) throws -> SchemaReport {
        try M3SearchError.boundary {
            let r = try IndexStore.inspectSchema(path: path)
            return SchemaReport(foreign: r.foreign, damaged: r.damaged)
        }
    }

    /// Drops the schema objects m3search did not create from the index at `path`, in one
    /// transaction (`m3search check --repair`); returns them. Rows are not touched.
    public static func removeForeignSchemaObjects(at path: String) throws -> [String] {
        try M3SearchError.boundary { try IndexStore.removeForeignSchemaObjects(path: path) }
    }
}
