import M3Model

/// Scores one query's ColBERT rows against stored blobs in their stored form. Built once per
/// query (for PQ with 8 or more values per code this computes the query × centroid table),
/// then used for every candidate.
package struct ColBERTScorer {
    let storage: ColBERTStorage
    let dimension: Int
    let query: MultiVector
    let codebook: ProductQuantizer?
    let table: [Float]
    /// The query in bfloat16, for PQ rows decoded (2 or 4 values per code).
    let queryBF16: [UInt16]

    package init(query: MultiVector, storage: ColBERTStorage, codebook: ProductQuantizer?) {
        self.storage = storage
        self.dimension = query.dimension
        self.query = query
        self.codebook = codebook
        if storage.needsCodebook, let codebook, codebook.scoresThroughTable {
            table = query.values.withUnsafeBufferPointer { codebook.lookupTable(query: $0) }
        } else {
            table = []
        }
        queryBF16 = storage.needsCodebook && !(codebook?.scoresThroughTable ?? true) ? Similarity.bfloat16(query.values) : []
    }

    /// The MaxSim score of a stored blob; nil when it is not whole rows (or PQ lacks a codebook).
    package func score(_ raw: UnsafeRawBufferPointer) -> Float? {
        let d = dimension
        guard let n = VectorCoding.colbertRowCount(raw.count, dimension: d, storage: storage) else { return nil }
        guard n > 0, query.count > 0, let base = raw.baseAddress else { return 0 }
        return query.values.withUnsafeBufferPointer { q -> Float? in
            switch storage {
            case .float16:
                // The kernel reads halves with unaligned loads, so SQLite's buffer is used as is.
                let halves = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt16.self), count: raw.count / 2)
                return Similarity.maxSim(query: q, dimension: d, float16Bits: halves)
            case .int8:
                return Similarity.maxSim(query: q, dimension: d, int8Rows: UnsafeRawBufferPointer(rebasing: raw[(4 * n)...]),
                                         scales: UnsafeRawBufferPointer(rebasing: raw[..<(4 * n)]))
            case .binary:
                return Similarity.maxSim(query: q, dimension: d, signBits: UnsafeRawBufferPointer(rebasing: raw[(4 * n)...]),
                                         factors: UnsafeRawBufferPointer(rebasing: raw[..<(4 * n)]))
            case .productQuantized:
                guard let codebook, codebook.dimension == d, raw.count % codebook.subspaces == 0 else { return nil }
                if !codebook.scoresThroughTable {
                    return queryBF16.withUnsafeBufferPointer { Similarity.maxSim(queryBF16: $0, codebook: codebook, codes: raw) }
                }
                return table.withUnsafeBufferPointer {
                    Similarity.maxSim(table: $0, queryRows: query.count, subspaces: codebook.subspaces, codes: raw)
                }
            }
        }
    }
}
