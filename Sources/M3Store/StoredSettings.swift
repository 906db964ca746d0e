import Foundation

/// The settings record as the file holds it: JSON in the meta table under `settings`.
///
/// The store knows these as text; M3Search reads them into its typed `IndexSettings`
/// (storage, pooling and pruning enums) and writes them back through this record, so the
/// bytes in the file stay those of every earlier m3search.
public struct StoredSettings: Codable, Equatable, Sendable {
    /// Identity of the model (hash of config and weights), see `BGEM3.identity`.
    public var modelID: String
    public var dimension: Int
    public var maxLength: Int
    public var overlap: Int
    /// "cls", "mean" or "max".
    public var pooling: String
    public var normalize: Bool
    public var hnswM: Int
    public var hnswEfConstruction: Int
    /// How ColBERT rows are stored: "f16", "int8", "binary" or "pq<n>".
    public var colbertStorage: String
    /// How dense vectors are stored: "f32", "f16" or "int8".
    public var denseStorage: String
    /// Which ColBERT rows are kept: "none" or "near-duplicates:<cos>".
    public var colbertPrune: String
    /// Texts put before every query and every passage at encode time ("" when none).
    public var queryPrefix: String
    public var passagePrefix: String
    /// The linear-layer precision that encoded the documents ("f32", "bf16", "int8"); nil
    /// in indexes written before it was recorded.
    public var precision: String?

    public init(modelID: String, dimension: Int, maxLength: Int = 512, overlap: Int = 64, pooling: String = "cls",
                normalize: Bool = true, hnswM: Int = 16, hnswEfConstruction: Int = 200, colbertStorage: String = "f16",
                denseStorage: String = "f32", colbertPrune: String = "none", queryPrefix: String = "",
                passagePrefix: String = "", precision: String? = nil) {
        self.modelID = modelID
        self.dimension = dimension
        self.maxLength = maxLength
        self.overlap = overlap
        self.pooling = pooling
        self.normalize = normalize
        self.hnswM = hnswM
        self.hnswEfConstruction = hnswEfConstruction
        self.colbertStorage = colbertStorage
        self.denseStorage = denseStorage
        self.colbertPrune = colbertPrune
        self.queryPrefix = queryPrefix
        self.passagePrefix = passagePrefix
        self.precision = precision
    }

    /// Settings written before a key existed decode with the value that was then implied
    /// (float16 ColBERT, float32 dense, no pruning, no prefixes, precision unrecorded).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelID = try c.decode(String.self, forKey: .modelID)
        dimension = try c.decode(Int.self, forKey: .dimension)
        maxLength = try c.decode(Int.self, forKey: .maxLength)
        overlap = try c.decode(Int.self, forKey: .overlap)
        pooling = try c.decode(String.self, forKey: .pooling)
        normalize = try c.decode(Bool.self, forKey: .normalize)
        hnswM = try c.decode(Int.self, forKey: .hnswM)
        hnswEfConstruction = try c.decode(Int.self, forKey: .hnswEfConstruction)
        colbertStorage = try c.decodeIfPresent(String.self, forKey: .colbertStorage) ?? "f16"
        denseStorage = try c.decodeIfPresent(String.self, forKey: .denseStorage) ?? "f32"
        colbertPrune = try c.decodeIfPresent(String.self, forKey: .colbertPrune) ?? "none"
        queryPrefix = try c.decodeIfPresent(String.self, forKey: .queryPrefix) ?? ""
        passagePrefix = try c.decodeIfPresent(String.self, forKey: .passagePrefix) ?? ""
        precision = try c.decodeIfPresent(String.self, forKey: .precision)
    }
}
