import Foundation
import M3Index
import M3Model
import M3Store

extension IndexWriter {
    /// Trains the ColBERT product quantiser once the float16 rows already stored (those of
    /// documents this write keeps) and the batch's (pruned) rows reach `codebookMinimumRows`:
    /// on all of them, or an evenly spaced sample of `codebookTrainingRows`. Returns the
    /// codebook and the stored chunks' rows re-encoded with it; nil while too few rows.
    /// The stored rows are few by construction (fewer than `codebookMinimumRows`).
    func trainCodebookIfDue(_ documents: [PreparedDocument], replacing paths: Set<String>) throws
        -> (ProductQuantizer?, [(chunkID: Int64, blob: Data)]) {
        guard case .productQuantized(let n) = settings.colbertStorage else { return (nil, []) }
        let d = settings.dimension
        let pruning = settings.colbertPruning
        // Count first: most writes of a waiting index stay below the threshold, and then
        // nothing needs decoding.
        var storedRows = 0
        try store.forEachColBERTLength { path, bytes in
            if !paths.contains(path) { storedRows += bytes / (2 * d) }
        }
        var batchRows = 0
        for doc in documents { for e in doc.embeddings { if let c = e.colbert { batchRows += pruning.apply(c).count } } }
        guard batchRows > 0 || storedRows > 0, storedRows + batchRows >= codebookMinimumRows else { return (nil, []) }
        var stored: [(id: Int64, rows: MultiVector)] = []
        try store.forEachColBERT { id, path, blob in
            if paths.contains(path) { return }
            guard let m = VectorCoding.decodeColBERT(blob, dimension: d, storage: .float16) else {
                throw StoreError.corrupt(path: self.path, detail: "ColBERT vectors of chunk \(id) are not whole float16 rows of \(d) values")
            }
            stored.append((id, m))
        }
        var all: [Float] = stored.flatMap(\.rows.values)
        for doc in documents { for e in doc.embeddings { if let c = e.colbert { all += pruning.apply(c).values } } }
        let codebook = try ProductQuantizer.train(rows: SearchIndex.codebookSample(all, dimension: d), dimension: d, subspaces: d / n)
        let storage = settings.colbertStorage
        return (codebook, stored.map { ($0.id, VectorCoding.encodeColBERT($0.rows, storage: storage, codebook: codebook)) })
    }

}

extension SearchIndex {
    /// Rows sampled for training the ColBERT product quantiser (k-means cost grows with it).
    package static let codebookTrainingRows = 16_384

    /// All rows, or `codebookTrainingRows` evenly spaced ones: what the index trains its
    /// codebook on (benchmarks train theirs the same way).
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
}
