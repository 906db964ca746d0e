import Foundation
import M3Index
import M3Store

/// What `check` found: empty `problems` means the index is sound.
public struct IntegrityReport: Sendable {
    public var documents = 0
    public var chunks = 0
    public var problems: [String] = []
    public var isSound: Bool { problems.isEmpty }
}

extension SearchIndex {
    /// Verifies the whole index: SQLite's integrity check, the HNSW graph's invariants,
    /// every chunk present in the graph and (when it has sparse weights) in the postings
    /// with the same weights, no graph node or posting without its chunk, and every
    /// chunk's vectors decodable with the right sizes.
    public func check() throws -> IntegrityReport {
        var report = IntegrityReport()
        let sqlite = try store.integrityCheck()
        if sqlite != ["ok"] { report.problems += sqlite.prefix(20).map { "SQLite: \($0)" } }
        try stateLock.read {
            do { _ = try hnsw.checkIntegrity() } catch { report.problems.append("HNSW: \(error)") }
            var chunkIDs = Set<Int64>()
            let dim = settings.dimension
            let s = try store.db.prepare("SELECT id, document_id, dense, sparse, colbert, token_count FROM chunks")
            while try s.step() {
                let id = s.int(0)
                chunkIDs.insert(id)
                if documentInfo[s.int(1)] == nil { report.problems.append("chunk \(id) belongs to no document") }
                if s.withBlob(2, { VectorCoding.decodeDense($0, dimension: dim, storage: denseStorage) }) == nil {
                    report.problems.append("chunk \(id): dense vector has the wrong size")
                }
                if !hnsw.contains(id: id) { report.problems.append("chunk \(id) is missing from the HNSW graph") }
                guard let sv = s.withBlob(3, { VectorCoding.decodeSparse($0) }) else {
                    report.problems.append("chunk \(id): sparse vector unreadable")
                    continue
                }
                for (token, w) in zip(sv.ids, sv.weights) where sparse.weight(document: id, token: token) != w {
                    report.problems.append("chunk \(id): posting for token \(token) disagrees with the chunk")
                    break
                }
                let rows = s.withBlob(4, { VectorCoding.colbertRowCount($0.count, dimension: dim, storage: colbertStorage) })
                let tokens = Int(s.int(5))
                // Pruning drops rows; without it there is one per token after <s>.
                let expected = colbertPruning == .none ? (tokens - 1)...(tokens - 1) : min(1, tokens - 1)...(tokens - 1)
                if !(rows.map { expected.contains($0) } ?? false) {
                    report.problems.append("chunk \(id): \(rows.map(String.init) ?? "unreadable") ColBERT rows for \(s.int(5)) tokens")
                }
            }
            report.chunks = chunkIDs.count
            report.documents = documentInfo.count
            if hnsw.count != chunkIDs.count {
                report.problems.append("HNSW holds \(hnsw.count) live nodes for \(chunkIDs.count) chunks")
            }
            if sparse.documentCount > chunkIDs.count {
                report.problems.append("postings reference \(sparse.documentCount) chunks, the file holds \(chunkIDs.count)")
            }
        }
        if report.problems.count > 50 { report.problems = Array(report.problems.prefix(50)) + ["…"] }
        return report
    }
}
