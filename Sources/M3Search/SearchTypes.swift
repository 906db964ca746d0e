import Foundation
import M3Model

/// A document to add through the library: an id (a path, or any unique string), its
/// text, and optional metadata kept as JSON.
public struct DocumentInput: Sendable {
    public var id: String
    public var text: String
    public var metadata: [String: String]?

    public init(id: String, text: String, metadata: [String: String]? = nil) {
        self.id = id
        self.text = text
        self.metadata = metadata
    }
}

/// How `search` ranks.
public struct SearchOptions: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable { case hybrid, dense, sparse, colbert }
    public enum Fusion: String, Sendable, CaseIterable { case weighted, rrf }

    /// Results to return (documents, or chunks with `groupByDocument = false`).
    public var k: Int = 10
    /// Fusion weights for dense, sparse, ColBERT (used in hybrid mode). A weight of 0 skips that mode.
    /// nil: the index's default weights (`SearchIndex.defaultWeights`: tuned and saved, else 0.4/0.3/0.3).
    public var weights: FusionWeights?
    public var mode: Mode = .hybrid
    public var fusion: Fusion = .weighted
    /// Candidates taken from HNSW and from the sparse index before exact rescoring.
    public var candidates: Int = 100
    /// One result per document (its best chunk); false: one result per chunk.
    public var groupByDocument = true
    /// HNSW search breadth; nil: max(64, candidates).
    public var efSearch: Int?
    /// Only documents this filter allows (nil: all). Applied while candidates are generated,
    /// never to a top k already cut (see `SearchFilter`).
    public var filter: SearchFilter?

    public init(k: Int = 10, weights: FusionWeights? = nil, mode: Mode = .hybrid, fusion: Fusion = .weighted,
                candidates: Int = 100, groupByDocument: Bool = true, efSearch: Int? = nil, filter: SearchFilter? = nil) {
        self.filter = filter
        self.k = k
        self.weights = weights
        self.mode = mode
        self.fusion = fusion
        self.candidates = candidates
        self.groupByDocument = groupByDocument
        self.efSearch = efSearch
    }

    /// The weights actually applied: the mode's own weight alone outside hybrid mode, and
    /// `indexDefault` in hybrid mode when no weights were given.
    func effectiveWeights(indexDefault: FusionWeights) -> FusionWeights {
        switch mode {
        case .hybrid: return weights ?? indexDefault
        case .dense: return FusionWeights(dense: 1, sparse: 0, colbert: 0)
        case .sparse: return FusionWeights(dense: 0, sparse: 1, colbert: 0)
        case .colbert: return FusionWeights(dense: 0, sparse: 0, colbert: 1)
        }
    }
}

/// One ranked result.
public struct SearchResult: Sendable, Equatable {
    public var rank: Int
    /// The fused score (weighted: Σ wᵢ·sᵢ / Σ wᵢ; rrf: Σ wᵢ / (60 + rankᵢ) with the weights rescaled to sum 1).
    public var score: Float
    /// Each mode's exact score; nil when its weight is 0 (not computed).
    public var dense: Float?
    public var sparse: Float?
    public var colbert: Float?
    /// The document's path (or the id given when it was added).
    public var path: String
    public var metadata: [String: String]?
    public var chunk: Int
    public var chunkID: Int64
    /// Character range (Unicode scalars) of the chunk in the document text.
    public var charRange: Range<Int>
    public var text: String
}

/// What a search did: candidate counts and time per stage (for `--explain`).
public struct SearchReport: Sendable {
    public var results: [SearchResult]
    public var denseCandidates = 0
    public var sparseCandidates = 0
    public var candidates = 0
    public var encodeSeconds = 0.0
    public var candidateSeconds = 0.0
    public var scoreSeconds = 0.0
    public var fuseSeconds = 0.0
    /// With a filter: the documents and chunks it matched, and how candidates were found
    /// ("all matching chunks scored" when they fit in the candidate count, else the HNSW
    /// plan: "graph", "two-hop" or "exhaustive"). nil without a filter.
    public var filterDocuments: Int?
    public var filterChunks: Int?
    public var filterPlan: String?

    public init(results: [SearchResult]) { self.results = results }
}
