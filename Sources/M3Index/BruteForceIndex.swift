import CM3Kernels

/// Exact top-k by inner product over every vector: the recall oracle beside `HNSWIndex`
/// (hnswlib ships its BruteforceSearch for the same reason).
///
/// It scores with the same kernel as the graph, so a hit both return has the same score,
/// and it follows the same conventions: results sorted by score descending, ties by id
/// ascending. Removal is exact (the last vector moves into the hole), so there are no
/// tombstones. It is a value type: copy it to hand a snapshot to readers.
///
///     var exact = try BruteForceIndex(dimension: 1024)
///     try exact.add(id: 7, vector: embedding)
///     let top = try exact.search(query, k: 10)   // [IndexHit], best first
public struct BruteForceIndex: Sendable {
    public let dimension: Int
    /// count × dimension floats, row i belongs to ids[i].
    private var vectors: [Float] = []
    private var ids: [Int64] = []
    private var rowOf: [Int64: Int] = [:]

    /// Throws `.invalidParameter` when `dimension` < 1.
    public init(dimension: Int) throws(IndexError) {
        guard dimension >= 1 else { throw .invalidParameter(name: "dimension", value: dimension, allowed: "≥ 1") }
        self.dimension = dimension
    }

    /// Number of vectors held.
    public var count: Int { ids.count }

    public func contains(id: Int64) -> Bool { rowOf[id] != nil }

    /// Adds a vector under a caller-chosen id.
    /// Throws `.duplicateID`, `.dimensionMismatch` or `.nonFiniteValue`.
    public mutating func add(id: Int64, vector: [Float]) throws(IndexError) {
        guard rowOf[id] == nil else { throw .duplicateID(id) }
        try vector.withUnsafeBufferPointer { (v) throws(IndexError) in try validateVector(v, dimension: dimension) }
        rowOf[id] = ids.count
        ids.append(id)
        vectors.append(contentsOf: vector)
    }

    /// Removes the vector with this id; false if there is none.
    @discardableResult
    public mutating func remove(id: Int64) -> Bool {
        guard let row = rowOf.removeValue(forKey: id) else { return false }
        let last = ids.count - 1
        if row != last {
            let movedID = ids[last]
            ids[row] = movedID
            rowOf[movedID] = row
            for j in 0..<dimension { vectors[row * dimension + j] = vectors[last * dimension + j] }
        }
        ids.removeLast()
        vectors.removeLast(dimension)
        return true
    }

    /// The exact `k` best ids by inner product with `query`, best first (ties: lower id first).
    /// Fewer when the index holds fewer; none for k ≤ 0. Throws `.dimensionMismatch`.
    public func search(_ query: [Float], k: Int) throws(IndexError) -> [IndexHit] {
        guard query.count == dimension else { throw .dimensionMismatch(expected: dimension, actual: query.count) }
        guard k > 0, !ids.isEmpty else { return [] }
        var top = TopK(k: k)
        let d = dimension
        query.withUnsafeBufferPointer { q in
            vectors.withUnsafeBufferPointer { v in
                for row in 0..<ids.count {
                    let s = m3ix_dot_f32(q.baseAddress!, v.baseAddress! + row * d, d)
                    if top.accepts(score: s, id: ids[row]) { top.offer(IndexHit(id: ids[row], score: s)) }
                }
            }
        }
        return top.sorted()
    }
}
