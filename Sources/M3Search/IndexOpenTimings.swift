import Foundation

/// Where opening an index spent its time, in seconds (wall clock): what `m3search query
/// --explain` prints next to the model's `LoadTimings`.
///
/// Opening reads the whole in-memory half of the index (`IndexState`) from one snapshot:
/// the document table, every posting list, every HNSW node record and every dense vector
/// (into the graph's rows). At 100k chunks the dense vectors dominate (BENCHMARKS.md,
/// "Start-up and memory at 100k chunks").
public struct IndexOpenTimings: Sendable, Equatable, CustomStringConvertible {
    /// Opening the SQLite file, verifying its schema and settings and the model identity.
    public var store: Double = 0
    /// The document table (ids, paths, metadata).
    public var documents: Double = 0
    /// Every sparse posting list, decoded into the in-memory inverted index.
    public var postings: Double = 0
    /// The HNSW header and node records (links), plus the codebook and saved weights.
    public var graphRecords: Double = 0
    /// Every chunk's dense vector, read from its row into the graph's slot.
    public var denseVectors: Double = 0
    /// The graph's final checks (every slot filled, entry point, counts).
    public var graphFinish: Double = 0
    /// The writer's and the readers' connections (and, on a writable open, the one-time
    /// document-id migration check).
    public var connections: Double = 0
    /// The whole open.
    public var total: Double = 0

    public init() {}

    public var description: String {
        func ms(_ s: Double) -> String { String(format: "%.1f ms", s * 1000) }
        return "index open \(ms(total)): store \(ms(store)), documents \(ms(documents)), postings \(ms(postings)), "
            + "graph records \(ms(graphRecords)), dense vectors \(ms(denseVectors)), graph checks \(ms(graphFinish)), "
            + "connections \(ms(connections))"
    }
}
