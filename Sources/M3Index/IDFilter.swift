/// Which ids a search may return. The indexes apply it while they generate candidates (HNSW
/// traversal, sparse postings), never to a top k already cut, so a filtered search returns
/// what an exhaustive ranking of the allowed items returns.
///
///     let inFolder = IDFilter(allowing: chunkIDsUnderDocs)        // a set: size known, enumerable
///     let recent = IDFilter { id in modified[id, default: 0] > cutoff }  // any predicate
///     let hits = try hnsw.search(q, k: 10, filter: inFolder)
///
/// A set lets the HNSW planner see the selectivity at once and enumerate the allowed items
/// when it scores them exhaustively; a predicate is sampled for its selectivity and, if it
/// is low, evaluated on every item.
public struct IDFilter: Sendable {
    enum Kind: Sendable {
        case set(Set<Int64>)
        case predicate(@Sendable (Int64) -> Bool)
    }

    let kind: Kind

    /// Allows exactly these ids.
    public init(allowing ids: Set<Int64>) { kind = .set(ids) }

    /// Allows exactly these ids.
    public init<S: Sequence>(allowing ids: S) where S.Element == Int64 { kind = .set(Set(ids)) }

    /// Allows the ids for which `allows` is true. It must be a pure function of the id.
    public init(_ allows: @escaping @Sendable (Int64) -> Bool) { kind = .predicate(allows) }

    @inline(__always)
    public func allows(_ id: Int64) -> Bool {
        switch kind {
        case .set(let s): return s.contains(id)
        case .predicate(let f): return f(id)
        }
    }

    /// How many ids a set filter allows (nil for a predicate). Ids the index does not hold
    /// count too, so this is an upper bound on the matching items.
    public var allowedCount: Int? {
        if case .set(let s) = kind { return s.count }
        return nil
    }

    /// The allowed ids of a set filter (nil for a predicate).
    var allowedIDs: Set<Int64>? {
        if case .set(let s) = kind { return s }
        return nil
    }
}
