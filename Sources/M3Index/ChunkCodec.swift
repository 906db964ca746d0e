import Foundation
import M3Model

/// One index's way of storing a chunk's vectors: the storage chosen at creation and, for
/// product quantisation, the codebook once trained. The single place where an encoder's
/// outputs become the blobs the store keeps, and where those blobs become vectors again
/// (for the graph, the scorer, `check` and exports):
///
/// ```swift
/// let codec = ChunkCodec(dimension: 1024, dense: .int8, colbert: .int8, pruning: .none, unitDense: true)
/// let blobs = codec.encode(dense: e.dense!, sparse: e.sparse!, colbert: e.colbert!)
/// // store blobs.dense / .sparse / .colbert; insert blobs.graphVector into the HNSW graph
/// ```
package struct ChunkCodec: Sendable {
    package let dimension: Int
    package let dense: DenseStorage
    /// The storage chosen for ColBERT rows (see `colbertRows` for the one in effect).
    package let colbert: ColBERTStorage
    package let pruning: ColBERTPruning
    /// Dense vectors are unit length (the model normalises): decoded f16/int8 vectors are
    /// rescaled to norm 1, as the inner-product graph needs.
    package let unitDense: Bool
    /// The product quantiser of PQ storage; nil before it is trained (and for other storage).
    package let codebook: ProductQuantizer?

    package init(dimension: Int, dense: DenseStorage, colbert: ColBERTStorage, pruning: ColBERTPruning,
                 unitDense: Bool, codebook: ProductQuantizer? = nil) {
        self.dimension = dimension
        self.dense = dense
        self.colbert = colbert
        self.pruning = pruning
        self.unitDense = unitDense
        self.codebook = codebook
    }

    /// The same codec with another codebook.
    package func with(codebook: ProductQuantizer?) -> ChunkCodec {
        ChunkCodec(dimension: dimension, dense: dense, colbert: colbert, pruning: pruning, unitDense: unitDense, codebook: codebook)
    }

    /// How the ColBERT rows are stored now: the chosen storage, except float16 while a PQ
    /// index waits for enough rows to train its codebook.
    package var colbertRows: ColBERTStorage {
        colbert.needsCodebook && codebook == nil ? .float16 : colbert
    }

    /// A chunk's three blobs, and the dense vector the graph holds for it.
    package struct Blobs {
        package var dense: Data
        package var sparse: Data
        package var colbert: Data
        /// The dense vector as read back from `dense`, so a reopened index (which decodes the
        /// stored blobs) searches exactly the vectors a running one does.
        package var graphVector: [Float]
    }

    /// Encodes one chunk's encoder outputs (ColBERT rows pruned first).
    package func encode(dense v: [Float], sparse: SparseVector, colbert m: MultiVector) -> Blobs {
        let denseBlob = VectorCoding.encodeDense(v, storage: dense)
        let graphVector = dense == .f32 ? v : denseBlob.withUnsafeBytes { decodeDense($0) } ?? v
        return Blobs(dense: denseBlob, sparse: VectorCoding.encodeSparse(sparse),
                     colbert: VectorCoding.encodeColBERT(pruning.apply(m), storage: colbertRows, codebook: codebook),
                     graphVector: graphVector)
    }

    /// The stored dense vector as float32 (unit length for normalised indexes); nil when
    /// the blob has the wrong size.
    package func decodeDense(_ raw: UnsafeRawBufferPointer) -> [Float]? {
        VectorCoding.decodeDense(raw, dimension: dimension, storage: dense, unit: unitDense)
    }

    /// The stored ColBERT rows as float32; nil when the blob is not whole rows.
    package func decodeColBERT(_ raw: UnsafeRawBufferPointer) -> MultiVector? {
        VectorCoding.decodeColBERT(raw, dimension: dimension, storage: colbertRows, codebook: codebook)
    }

    /// Rows in a stored ColBERT blob, or nil when its length is not whole rows.
    package func colbertRowCount(_ raw: UnsafeRawBufferPointer) -> Int? {
        VectorCoding.colbertRowCount(raw.count, dimension: dimension, storage: colbertRows)
    }

    /// A MaxSim scorer of stored blobs for one query (built once per query).
    package func scorer(query: MultiVector) -> ColBERTScorer {
        ColBERTScorer(query: query, storage: colbertRows, codebook: codebook)
    }
}
