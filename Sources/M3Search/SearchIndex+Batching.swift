import M3Model

// Hooks for a server that batches queries: several queries are prepared apart, encoded in
// one forward pass, then searched apart with `search(encoded:options:)`. These are the
// steps `search(_:options:)` itself takes for one query (IndexReader), so a query answers
// the same alone or batched whenever the encoder is batch-invariant.
extension SearchIndex {
    /// Validates a query and its options as `search(_:options:)` does and tokenizes it.
    ///
    /// Throws `M3SearchError.invalidArgument` for a blank query or bad options.
    package func prepareQuery(_ query: String, options: SearchOptions) throws -> PreparedQuery {
        try M3SearchError.boundary { try reader.prepare(query, options: options) }
    }

    /// Encodes prepared queries in one forward pass, each with the union of the outputs
    /// asked for (an output a query's weights do not use is ignored by its search).
    package func encodeQueries(_ queries: [PreparedQuery]) throws -> [Embedding] {
        try M3SearchError.boundary { try reader.encode(queries) }
    }

    /// Whether the encoder gives a short query the same bits alone and inside a batch,
    /// checked by encoding one query both ways. A batching server shares forward passes
    /// only then: otherwise a query's scores would shift in the last bits with its company.
    package func encoderIsBatchInvariant() throws -> Bool {
        let a = try prepareQuery("exception handling with try and finally", options: SearchOptions())
        let b = try prepareQuery("generators", options: SearchOptions())
        let alone = try encodeQueries([a])[0]
        let batched = try encodeQueries([b, a, b])[1]
        return alone.isBitIdentical(to: batched)
    }
}

extension Embedding {
    /// Equal bit for bit: `==` on Float would call -0 and +0 equal and NaN unequal to itself,
    /// and batch invariance means the same bits.
    func isBitIdentical(to other: Embedding) -> Bool {
        func same(_ a: [Float]?, _ b: [Float]?) -> Bool {
            guard let a, let b else { return a == nil && b == nil }
            return a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
        }
        return tokenIDs == other.tokenIDs
            && same(dense, other.dense)
            && sparse?.ids == other.sparse?.ids
            && same(sparse?.weights, other.sparse?.weights)
            && colbert?.dimension == other.colbert?.dimension
            && same(colbert?.values, other.colbert?.values)
    }
}
