import M3Index

/// What a storage codec costs in ranking quality, measured on trained weights.
///
/// The numbers are not computed here: `python Benchmarks/trained_table.py --swift` prints
/// the rows of `measured` from `Benchmarks/results/trained_eval.jsonl`
/// (`python Benchmarks/trained_eval.py`, see BENCHMARKS.md "Storage on trained weights"):
/// the e5-small trained fixture (`Fixtures/convert_e5.py`, mean pooling, 384-d) on the
/// gettext evaluation set (`Fixtures/eval/gettext`, 273 held-out queries in 15 languages
/// over 328 English messages), every query scored against every stored chunk by brute force.
/// A ColBERT codec's row was measured with float32 dense, a dense codec's with float16 ColBERT,
/// so each row is that component's cost alone.
///
/// ```swift
/// let cost = StorageCost.colbert(.int8)      // worst nDCG@10 loss over the five modes
/// print(cost?.summary ?? "not measured")   // "int8 ColBERT: nDCG@10 −0.0001 at worst (colbert), …"
/// ```
public struct StorageCost: Sendable, Equatable, Codable {
    /// "colbert" or "dense".
    public let component: String
    /// The codec's name as `--colbert-storage` / `--dense-storage` takes it.
    public let codec: String
    /// nDCG@10 of exact storage minus this codec's, per mode `m3search eval` reports
    /// (positive: worse than exact), in the order dense, sparse, colbert, dense+sparse, all three.
    public let ndcgLoss: [Double]
    /// Top-10 documents shared with exact storage, hybrid fusion 0.4/0.3/0.3 (trained fixture).
    public let hybridOverlap: Double
    /// The same overlap for ColBERT alone (trained fixture).
    public let colbertOverlap: Double

    /// The modes of `ndcgLoss`, in order.
    public static let modes = ["dense", "sparse", "colbert", "dense+sparse", "dense+sparse+colbert"]
    /// Where the numbers come from.
    public static let source = "Benchmarks/results/trained_eval.jsonl: e5-small trained fixture, gettext set, 273 queries"

    /// The largest loss over the modes (0 when no mode lost).
    public var worstLoss: Double { max(0, ndcgLoss.max() ?? 0) }

    /// One line, e.g. "int8 ColBERT: nDCG@10 −0.0001 at worst (colbert), hybrid top-10 overlap 1.000".
    public var summary: String {
        let worst = ndcgLoss.indices.max { ndcgLoss[$0] < ndcgLoss[$1] } ?? 0
        let loss = worstLoss == 0 ? "no nDCG@10 loss" : "nDCG@10 −" + Self.fixed(worstLoss, 4) + " at worst (\(Self.modes[worst]))"
        return "\(codec) \(component == "colbert" ? "ColBERT" : "dense"): \(loss), hybrid top-10 overlap \(Self.fixed(hybridOverlap, 3))"
    }

    static func fixed(_ x: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = Int((x * scale).rounded())
        let whole = n / Int(scale), frac = String(n % Int(scale))
        return "\(whole)." + String(repeating: "0", count: digits - frac.count) + frac
    }

    /// The measured cost of storing ColBERT rows as `storage`, or nil if it was not measured.
    public static func colbert(_ storage: ColBERTStorage) -> StorageCost? {
        measured.first { $0.component == "colbert" && $0.codec == storage.description }
    }

    /// The measured cost of storing dense vectors as `storage`.
    public static func dense(_ storage: DenseStorage) -> StorageCost? {
        measured.first { $0.component == "dense" && $0.codec == storage.description }
    }

    /// Copied from Benchmarks/results/trained_eval.jsonl (see `source`).
    public static let measured: [StorageCost] = [
        StorageCost(component: "colbert", codec: "f16", ndcgLoss: [0, 0, 0, 0, 0], hybridOverlap: 1.000, colbertOverlap: 1.000),
        StorageCost(component: "colbert", codec: "int8", ndcgLoss: [0, 0, 0, 0, 0], hybridOverlap: 0.996, colbertOverlap: 0.994),
        StorageCost(component: "colbert", codec: "pq2", ndcgLoss: [0, 0, 0.0006, 0, 0.0001], hybridOverlap: 0.983, colbertOverlap: 0.963),
        StorageCost(component: "colbert", codec: "pq4", ndcgLoss: [0, 0, 0.0039, 0, 0.0019], hybridOverlap: 0.940, colbertOverlap: 0.862),
        StorageCost(component: "colbert", codec: "pq8", ndcgLoss: [0, 0, 0.0132, 0, 0.0029], hybridOverlap: 0.902, colbertOverlap: 0.750),
        StorageCost(component: "colbert", codec: "pq16", ndcgLoss: [0, 0, 0.039, 0, 0.0005], hybridOverlap: 0.884, colbertOverlap: 0.657),
        StorageCost(component: "colbert", codec: "pq32", ndcgLoss: [0, 0, 0.0849, 0, 0.0082], hybridOverlap: 0.878, colbertOverlap: 0.605),
        StorageCost(component: "colbert", codec: "pq64", ndcgLoss: [0, 0, 0.126, 0, 0.0071], hybridOverlap: 0.872, colbertOverlap: 0.574),
        StorageCost(component: "colbert", codec: "binary", ndcgLoss: [0, 0, 0.0525, 0, 0.0066], hybridOverlap: 0.839, colbertOverlap: 0.546),
        StorageCost(component: "dense", codec: "f32", ndcgLoss: [0, 0, 0, 0, 0], hybridOverlap: 1.000, colbertOverlap: 1.000),
        StorageCost(component: "dense", codec: "int8", ndcgLoss: [0, 0, 0, 0, -0.0001], hybridOverlap: 0.997, colbertOverlap: 1.000),
        StorageCost(component: "dense", codec: "f16", ndcgLoss: [0, 0, 0, 0, 0], hybridOverlap: 1.000, colbertOverlap: 1.000),
    ]
}
