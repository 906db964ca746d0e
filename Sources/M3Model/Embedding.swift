/// The three views BGE-M3 gives of one text, from one forward pass.
public struct Embedding: Sendable, Equatable {
    /// The token ids the model saw: `<s>` … `</s>`, after truncation.
    public var tokenIDs: [Int32]
    /// Pooled hidden state (CLS by default), L2-normalised unless turned off. nil when not asked for.
    public var dense: [Float]?
    /// Lexical weights: relu(sparse_linear(h)), max per token id, specials dropped, only weights > 0.
    public var sparse: SparseVector?
    /// One vector per token after `<s>` (so `</s>` included), each L2-normalised.
    public var colbert: MultiVector?

    public init(tokenIDs: [Int32], dense: [Float]? = nil, sparse: SparseVector? = nil, colbert: MultiVector? = nil) {
        self.tokenIDs = tokenIDs
        self.dense = dense
        self.sparse = sparse
        self.colbert = colbert
    }
}

/// A sparse lexical vector, ids ascending, one weight per id.
public struct SparseVector: Sendable, Equatable {
    public var ids: [Int32]
    public var weights: [Float]

    public init(ids: [Int32] = [], weights: [Float] = []) {
        precondition(ids.count == weights.count, "one weight per id")
        self.ids = ids
        self.weights = weights
    }

    public var count: Int { ids.count }
    public var isEmpty: Bool { ids.isEmpty }

    /// Builds from unordered (id, weight) pairs, keeping the maximum weight per id.
    public init(maxOf pairs: [(Int32, Float)]) {
        let sorted = pairs.sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 > $1.1) }
        var ids: [Int32] = [], weights: [Float] = []
        ids.reserveCapacity(sorted.count)
        weights.reserveCapacity(sorted.count)
        for (id, w) in sorted where ids.last != id {
            ids.append(id)
            weights.append(w)
        }
        self.init(ids: ids, weights: weights)
    }
}

/// `count` vectors of `dimension` floats, row-major.
public struct MultiVector: Sendable, Equatable {
    public var dimension: Int
    public var values: [Float]

    public init(dimension: Int, values: [Float]) {
        precondition(dimension > 0 && values.count % dimension == 0, "values must hold whole vectors")
        self.dimension = dimension
        self.values = values
    }

    public var count: Int { values.count / dimension }

    public subscript(row: Int) -> ArraySlice<Float> {
        values[row * dimension ..< (row + 1) * dimension]
    }
}

/// Which of the three outputs to compute. Heads not asked for are not run.
public struct OutputKinds: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let dense = OutputKinds(rawValue: 1)
    public static let sparse = OutputKinds(rawValue: 2)
    public static let colbert = OutputKinds(rawValue: 4)
    public static let all: OutputKinds = [.dense, .sparse, .colbert]
}

/// How the dense vector is pooled from the last hidden states. BGE-M3 is trained with CLS.
public enum Pooling: String, Sendable, CaseIterable {
    case cls, mean, max
}

/// The knobs of one encode call.
public struct EncodeOptions: Sendable, Equatable {
    /// Longest token sequence, both specials included; longer texts are truncated (keeping `</s>`).
    public var maxLength: Int = 8192
    public var outputs: OutputKinds = .all
    public var pooling: Pooling = .cls
    /// L2-normalise the dense and ColBERT vectors (FlagEmbedding's `normalize_embeddings`).
    public var normalize: Bool = true
    /// Texts are sorted by length and packed into batches of at most this many tokens.
    public var batchTokens: Int = 16384

    public init(maxLength: Int = 8192, outputs: OutputKinds = .all, pooling: Pooling = .cls,
                normalize: Bool = true, batchTokens: Int = 16384) {
        self.maxLength = maxLength
        self.outputs = outputs
        self.pooling = pooling
        self.normalize = normalize
        self.batchTokens = batchTokens
    }
}
