import Foundation

/// Where opening an index spent its time, in seconds (wall clock): what `m3search query
/// --explain` prints next to the model's `LoadTimings`.
///
/// Opening reads the in-memory half of the index (`IndexState`) from one snapshot: the
/// document table and the graph, from its image when current (a few large blobs) or else
/// every HNSW node record and every dense vector. Posting lists are read later, per query
/// token (BENCHMARKS.md, "Start-up and memory at 100k chunks").
public struct IndexOpenTimings: Sendable, Equatable, CustomStringConvertible {
    /// Opening the SQLite file, verifying its schema and settings and the model identity.
    public var store: Double = 0
    /// The document table (ids, paths, metadata).
    public var documents: Double = 0
    /// Every sparse posting list, decoded into the in-memory inverted index (0 when they are
    /// read on demand, as an opened `SearchIndex` does).
    public var postings: Double = 0
    /// The HNSW header and node records (links), plus the codebook and saved weights.
    public var graphRecords: Double = 0
    /// Every chunk's dense vector, read from its row into the graph's slot.
    public var denseVectors: Double = 0
    /// The graph's final checks (every slot filled, entry point, counts).
    public var graphFinish: Double = 0
    /// Reading the graph from its image (segments copied in bulk, then the same checks), or
    /// finding it unusable; then the three fields above time the row-by-row load.
    public var graphImage: Double = 0
    /// Where the graph came from: "image", or "rows (why not the image)".
    public var graphSource = ""
    /// The writer's and the readers' connections (and, on a writable open, the one-time
    /// document-id migration check).
    public var connections: Double = 0
    /// The whole open.
    public var total: Double = 0

    public init() {}

    public var description: String {
        func ms(_ s: Double) -> String { String(format: "%.1f ms", s * 1000) }
        return "index open \(ms(total)): store \(ms(store)), documents \(ms(documents)), postings \(ms(postings)), "
            + "graph image \(ms(graphImage)), graph records \(ms(graphRecords)), dense vectors \(ms(denseVectors)), "
            + "graph checks \(ms(graphFinish)), connections \(ms(connections)); graph from \(graphSource.isEmpty ? "-" : graphSource)"
    }
}
