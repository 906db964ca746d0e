import Foundation
import M3Model

// Hooks for a server that batches queries: several queries are tokenized apart, encoded
// in one forward pass, then searched apart with `search(encoded:options:)`. Every step
// does what `search(_:options:)` does for one query, so a query answers the same alone
// or batched (the encoder packs sequences without padding: a row never sees its batch).

/// A query checked and tokenized, waiting for its forward pass.
package struct PreparedQuery: Sendable {
    /// Token ids with `<s>` … `</s>`, truncated as `search(_:options:)` truncates.
    package let tokenIDs: [Int32]
    /// The encoder outputs its search needs (the fusion weights decide).
    package let outputs: OutputKinds

    /// Queries of at most this many tokens may share a forward pass. The encoder's short
    /// path (sequences ≤ 64 tokens) computes each row from that row alone, so such a query
    /// gets the same bits in any batch; a longer one runs the packed sgemm path, whose
    /// rounding depends on the batch, and is encoded in a pass of its own.
    package static let sharedPassMaxTokens = 64
    package var sharesPass: Bool { tokenIDs.count <= Self.sharedPassMaxTokens }
}

extension SearchIndex {
    /// Validates a query and its options as `search(_:options:)` does and tokenizes it.
    ///
    /// Throws `SearchError.invalidQuery` for a blank query, `.invalidOptions` for bad options.
    package func prepareQuery(_ query: String, options: SearchOptions) throws -> PreparedQuery {
        guard !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw SearchError.invalidQuery("the query is empty")
        }
        try validate(options)
        let w = options.effectiveWeights(indexDefault: defaultWeights)
        var outputs: OutputKinds = []
        if w.dense > 0 || w.colbert > 0 { outputs.insert(.dense) }   // dense also feeds candidates
        if w.sparse > 0 || w.colbert > 0 { outputs.insert(.sparse) }
        if w.colbert > 0 { outputs.insert(.colbert) }
        let maxLength = min(Self.queryMaxLength, model.config.maxSequenceLength)
        return PreparedQuery(tokenIDs: model.tokenizer.encode(query, maxLength: maxLength), outputs: outputs)
    }

    /// Encodes prepared queries in one forward pass (`batchTokens` at least their total
    /// length), each with the union of the outputs asked for: an output a query's weights
    /// do not use is ignored by its search, so it costs a little time and changes nothing.
    package func encodeQueries(_ queries: [PreparedQuery]) throws -> [Embedding] {
        guard !queries.isEmpty else { return [] }
        let outputs = queries.reduce(into: OutputKinds()) { $0.formUnion($1.outputs) }
        let tokens = queries.reduce(0) { $0 + $1.tokenIDs.count }
        let options = EncodeOptions(maxLength: Self.queryMaxLength, outputs: outputs,
                                    pooling: Pooling(rawValue: settings.pooling) ?? .cls,
                                    normalize: settings.normalize, batchTokens: max(tokens, 1))
        return try model.encode(tokenIDs: queries.map(\.tokenIDs), options: options)
    }

    /// Whether the encoder gives a short query the same bits alone and inside a batch,
    /// checked by encoding one query both ways. A batching server shares forward passes
    /// only then: otherwise a query's scores would shift in the last bits with its company.
    package func encoderIsBatchInvariant() throws -> Bool {
        let a = try prepareQuery("exception handling with try and finally", options: SearchOptions())
        let b = try prepareQuery("generators", options: SearchOptions())
        let alone = try encodeQueries([a])[0]
        let batched = try encodeQueries([b, a, b])[1]
        return alone == batched
    }
}
