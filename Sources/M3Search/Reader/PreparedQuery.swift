import M3Model

/// A query checked and tokenized, waiting for its forward pass: the first step of every
/// search (`IndexReader.prepare`). A batching server encodes several in one pass
/// (`IndexReader.encode`) and searches each with `search(encoded:options:)`.
package struct PreparedQuery: Sendable {
    /// Token ids with `<s>` … `</s>`, truncated to the query length.
    package let tokenIDs: [Int32]
    /// The encoder outputs its search needs (the fusion weights decide).
    package let outputs: OutputKinds

    /// Queries of at most this many tokens may share a forward pass. A batch-invariant
    /// encoder computes such a row from that row alone, so the query gets the same bits in
    /// any batch; a longer one runs the packed sgemm path, whose rounding depends on the
    /// batch, and is encoded in a pass of its own.
    package static let sharedPassMaxTokens = 64
    package var sharesPass: Bool { tokenIDs.count <= Self.sharedPassMaxTokens }
}
