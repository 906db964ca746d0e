// The BGE-M3 forward pass: XLM-RoBERTa encoder + dense, sparse and ColBERT heads.
//
// Reads top to bottom in the order it runs: weights (named as in the checkpoint),
// the linear-algebra helpers, the encoder forward, then the three heads.
//
// Batches are *packed*: the sequences of a batch are laid end to end in one (T, H)
// matrix, T = Σ lengths, with no padding at all. Every linear layer is then one large
// sgemm over all T rows, and attention runs per sequence, so a text's outputs never
// depend on what it is batched with.
//
// Short sequences (queries, ≤ `Encoder.shortSequenceLimit` tokens) take the *short path*:
// the same forward pass with linear layers that stream each weight once as dot products of
// x rows and W rows (m3_f32_linear, or the int8 / bf16 kernels on their packed weights),
// where sgemm would spend more time packing the weights than multiplying them. Every kernel
// of the short path computes a row's outputs from that row alone, in a fixed order, so a
// query's outputs are bit for bit the same alone or in any batch of short queries.
import CM3Kernels
import COpenBLAS
import Foundation

// MARK: - Weights (the struct tree is the checkpoint key path)

/// nn.Linear: y = x·Wᵀ + b, with W in float32 or packed for the int8 / bf16 kernels.
struct Linear: @unchecked Sendable {
    let weight: Tensor?          // (out, in) float32; nil once packed
    let packed: PackedMatrix?    // (out, in) int8 / bf16; nil in float32
    let bias: Tensor             // (out)
    let outFeatures: Int
    let inFeatures: Int

    /// `bare`: the head files hold plain "weight" and "bias" keys (`prefix` then only names
    /// the layer for `packer`). Packing for `precision` happens here, once, or `packer` hands
    /// out the cached packing; the float32 weight is then dropped (and its mapped pages released).
    init(_ dict: StateDict, _ prefix: String, out: Int, in inFeatures: Int, bare: Bool = false,
         precision: Precision = .float32, packer: WeightPacker? = nil) throws {
        try self.init(dict, prefix, out: out, in: inFeatures, bare: bare, arithmetic: LinearArithmetic(precision), packer: packer)
    }

    init(_ dict: StateDict, _ prefix: String, out: Int, in inFeatures: Int, bare: Bool = false,
         arithmetic: LinearArithmetic, packer: WeightPacker? = nil) throws {
        let p = bare ? "" : prefix + "."
        let w = try dict.tensor(p + "weight", shape: [out, inFeatures])
        bias = try dict.tensor(p + "bias", shape: [out])
        outFeatures = out
        self.inFeatures = inFeatures
        if let packer {
            packed = packer.matrix(prefix, w, arithmetic: arithmetic)
        } else {
            packed = PackedMatrix(w, arithmetic: arithmetic)
        }
        if packed != nil {
            weight = nil
            w.releaseMappedPages()
        } else {
            weight = w
        }
    }
}

/// nn.LayerNorm over the hidden size.
struct LayerNorm: @unchecked Sendable {
    let weight: Tensor  // (H)
    let bias: Tensor    // (H)

    init(_ dict: StateDict, _ prefix: String, size: Int) throws {
        weight = try dict.tensor(prefix + ".weight", shape: [size])
        bias = try dict.tensor(prefix + ".bias", shape: [size])
    }
}

/// encoder.layer.N.*
struct EncoderLayer: @unchecked Sendable {
    let query: Linear, key: Linear, value: Linear      // attention.self.{query,key,value}
    let attentionOutput: Linear                         // attention.output.dense
    let attentionNorm: LayerNorm                        // attention.output.LayerNorm
    let intermediate: Linear                            // intermediate.dense   (I, H)
    let output: Linear                                  // output.dense         (H, I)
    let outputNorm: LayerNorm                           // output.LayerNorm

    init(_ d: StateDict, _ p: String, _ c: ModelConfig, precision: Precision, packer: WeightPacker? = nil) throws {
        let h = c.hiddenSize, i = c.intermediateSize
        query = try Linear(d, p + "attention.self.query", out: h, in: h, precision: precision, packer: packer)
        key = try Linear(d, p + "attention.self.key", out: h, in: h, precision: precision, packer: packer)
        value = try Linear(d, p + "attention.self.value", out: h, in: h, precision: precision, packer: packer)
        attentionOutput = try Linear(d, p + "attention.output.dense", out: h, in: h, precision: precision, packer: packer)
        attentionNorm = try LayerNorm(d, p + "attention.output.LayerNorm", size: h)
        intermediate = try Linear(d, p + "intermediate.dense", out: i, in: h, arithmetic: precision.feedForwardUp(inFeatures: h), packer: packer)
        output = try Linear(d, p + "output.dense", out: h, in: i, precision: precision, packer: packer)
        outputNorm = try LayerNorm(d, p + "output.LayerNorm", size: h)
    }
}

/// The XLM-RoBERTa encoder weights (XLMRobertaModel, optionally under a `roberta.` prefix).
struct EncoderWeights: @unchecked Sendable {
    let wordEmbeddings: Tensor      // (V, H)
    let positionEmbeddings: Tensor  // (P, H)
    let tokenTypeEmbeddings: Tensor // (types, H); BGE-M3 only uses row 0
    let embeddingNorm: LayerNorm
    let layers: [EncoderLayer]

    /// `precision`: how the linear layers are stored (packed here, once, at load, or handed
    /// out by `packer` from its cache).
    init(_ d: StateDict, config c: ModelConfig, precision: Precision = .float32, packer: WeightPacker? = nil) throws {
        let prefix = d["roberta.embeddings.word_embeddings.weight"] != nil ? "roberta." : ""
        let h = c.hiddenSize
        wordEmbeddings = try d.tensor(prefix + "embeddings.word_embeddings.weight", shape: [c.vocabularySize, h])
        positionEmbeddings = try d.tensor(prefix + "embeddings.position_embeddings.weight", shape: [c.maxPositions, h])
        tokenTypeEmbeddings = try d.tensor(prefix + "embeddings.token_type_embeddings.weight", shape: [c.typeVocabularySize, h])
        embeddingNorm = try LayerNorm(d, prefix + "embeddings.LayerNorm", size: h)
        if precision == .float32 {  // nothing to do but shape checks: the tensors stay mapped
            layers = try (0..<c.layerCount).map { try EncoderLayer(d, prefix + "encoder.layer.\($0).", c, precision: precision) }
        } else {  // packing reads and converts every weight: one layer per core
            var built = [Result<EncoderLayer, any Error>?](repeating: nil, count: c.layerCount)
            built.withUnsafeMutableBufferPointer { buffer in
                let slots = UncheckedSendable(buffer)  // each iteration writes its own slot
                DispatchQueue.concurrentPerform(iterations: c.layerCount) { i in
                    slots.value[i] = Result { try EncoderLayer(d, prefix + "encoder.layer.\(i).", c, precision: precision, packer: packer) }
                }
            }
            layers = try built.map { try $0!.get() }
        }
    }
}

/// colbert_linear.pt (H → H) and sparse_linear.pt (H → 1).
struct HeadWeights: @unchecked Sendable {
    let colbert: Linear  // (H, H), in the encoder's precision
    let sparse: Linear   // (1, H), always float32 (a gemv)
}

// MARK: - Linear algebra

/// y (rows, out) = x (rows, in)·Wᵀ (+ b): each core takes a contiguous range of output
/// columns (rows of W) with single-threaded sgemm and adds its bias slice while the block
/// is in cache. OpenBLAS's own threading leaves its idle workers spinning after each call,
/// taking the cores from the row kernels that follow (2–3% at 512 tokens, measured).
private func linearFloat32(_ x: UnsafePointer<Float>, rows: Int, _ w: Tensor, bias: UnsafePointer<Float>?,
                           into y: UnsafeMutablePointer<Float>) {
    let out = w.shape[0], inner = w.shape[1]
    let workers = rows * out * inner >= 1 << 22 ? ProcessInfo.processInfo.activeProcessorCount : 1
    let per = ((out + workers - 1) / workers + 15) / 16 * 16
    let buffers = UncheckedSendable((x: x, w: w.pointer, bias: bias, y: y))
    OpenBLASThreads.singleThreaded {
        DispatchQueue.concurrentPerform(iterations: workers) { i in
            let (x, wp, bias, y) = buffers.value
            let c0 = i * per, n = min(per, out - c0)
            guard n > 0 else { return }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(n), Int32(inner),
                        1, x, Int32(inner), wp + c0 * inner, Int32(inner), 0, y + c0, Int32(out))
            if let bias { for r in 0..<rows { m3_add_bias(y + r * out + c0, bias + c0, 1, n) } }
        }
    }
}

/// y (rows, out) = x (rows, in)·Wᵀ + b in the layer's precision: sgemm then a bias pass, or
/// the int8 / bf16 kernel with the bias fused into its store. `addingBias: false` leaves the
/// bias to the caller's fused kernel (bias + GELU). `scratch` holds x's int8 / bf16 copy.
private func linear(_ x: UnsafePointer<Float>, rows: Int, _ l: Linear, into y: UnsafeMutablePointer<Float>,
                    addingBias: Bool = true, scratch: ConversionScratch? = nil) {
    let bias = l.bias.pointer
    if let packed = l.packed {
        let s = scratch ?? ConversionScratch(rows: rows, inFeatures: l.inFeatures)
        packed.multiply(x, rows: rows, bias: addingBias ? bias : nil, into: y, scratch: s.bytes(rows: rows, inFeatures: l.inFeatures))
        return
    }
    linearFloat32(x, rows: rows, l.weight!, bias: addingBias ? bias : nil, into: y)
}

/// One output of a short-path linear step: y (rows, out) = x·Wᵀ + b, or GELU(x·Wᵀ + b).
private struct ShortOutput {
    let layer: Linear
    let y: UnsafeMutablePointer<Float>
    var gelu = false
}

/// The short path's linear step: every output of `outputs` (layers sharing x (rows, in))
/// in one parallel step. Their columns are cut into chunks that the cores take in turn, so
/// a core slowed by another process takes fewer. float32 weights run m3_f32_linear in place;
/// packed weights convert x once for all outputs (q, k and v share it) and run their kernel on
/// panel ranges. Each chunk adds its bias (and GELU) while its columns are in cache.
private func linearShort(_ x: UnsafePointer<Float>, rows: Int, _ outputs: [ShortOutput],
                         scratch: ConversionScratch?) {
    guard rows > 0, let first = outputs.first?.layer else { return }
    let k = first.inFeatures
    precondition(outputs.allSatisfy { $0.layer.inFeatures == k && $0.layer.packed?.arithmetic == first.packed?.arithmetic },
                 "outputs of one short linear step share x and its conversion")
    // (output, first column, end column) per chunk; packed chunks are whole panels.
    var chunks: [(output: Int, j0: Int, j1: Int)] = []
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let totalColumns = outputs.reduce(0) { $0 + $1.layer.outFeatures }
    // ~8 chunks per core: fine enough to balance, coarse enough that each streams ≥ 48 rows of W.
    let target = max(48, totalColumns / max(8 * cores, 1))
    for (i, o) in outputs.enumerated() {
        let n = o.layer.outFeatures
        let width = o.layer.packed == nil ? (target + 2) / 3 * 3 : max(1, target / 64) * 64
        var j = 0
        while j < n { chunks.append((i, j, min(j + width, n))); j += width }
    }
    let conversion = first.packed == nil ? nil : scratch ?? ConversionScratch(rows: rows, inFeatures: k)
    defer { withExtendedLifetime(conversion) {} }
    var converted: UnsafeMutableRawPointer? = nil
    if let packed = first.packed, let conversion {
        converted = conversion.bytes(rows: rows, inFeatures: k)
        packed.convert(x, rows: rows, into: converted!)
    }
    // Chunks write disjoint columns of their outputs.
    let shared = UncheckedSendable((x: x, converted: converted, outputs: outputs, chunks: chunks))
    let run: @Sendable (Int) -> Void = { c in
        let (x, converted, outputs, chunks) = shared.value
        let (i, j0, j1) = chunks[c]
        let o = outputs[i], l = o.layer, n = l.outFeatures
        let bias = l.bias.pointer
        if let packed = l.packed, let converted {
            packed.multiplyConverted(rows: rows, scratch: converted, bias: o.gelu ? nil : bias,
                                     into: o.y, panels: j0 / 64 ..< (j1 + 63) / 64)
        } else if let w = l.weight {
            m3_f32_linear(x, rows, k, k, w.pointer, k, o.gelu ? nil : bias, o.y, n, j0, j1)
        }
        if o.gelu { for r in 0..<rows { m3_bias_gelu(o.y + r * n + j0, bias + j0, 1, j1 - j0) } }
    }
    // Below ~1 M multiply-adds the hand-off to a second core costs more than it saves.
    if cores > 1 && rows * totalColumns * k >= 1 << 20 {
        parallelFor(chunks.count, run)
    } else {
        for c in chunks.indices { run(c) }
    }
}

/// Runs a row-wise kernel over `rows` rows in blocks, on all cores when the work is
/// large enough to pay for the hand-off (sgemm already uses every core; these loops
/// would otherwise run on one).
@inline(__always)
private func forRowBlocks(_ rows: Int, cols: Int, _ body: (_ firstRow: Int, _ count: Int) -> Void) {
    let workers = rows * cols >= 1 << 16 ? min(ProcessInfo.processInfo.activeProcessorCount, rows) : 1
    if workers <= 1 { body(0, rows); return }
    let per = (rows + workers - 1) / workers
    // The blocks write disjoint rows.
    parallelFor(workers) { i in
        let r0 = i * per
        if r0 < rows { body(r0, min(per, rows - r0)) }
    }
}

private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Owned scratch memory for one forward call, freed when the call returns. 64-byte aligned:
/// rows of 1,024 or 4,096 floats then start on cache lines, so the short path's vector loads
/// of x rows never straddle two lines (malloc's 16-byte alignment made the float32 kernel's
/// loads split; aligned, one pass's linear layers take ~10 % less CPU at 16 rows, ~20 % at 128).
final class Scratch {
    let buffer: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        let n = max(count, 1)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: n)
    }
    deinit { UnsafeMutableRawPointer(buffer).deallocate() }
}

/// Wall time per forward stage, summed over layers (benchmarks' profile; nil in normal runs).
package final class StageClock {
    package private(set) var seconds: [(stage: String, seconds: Double)] = []
    private var last = DispatchTime.now().uptimeNanoseconds
    package init() {}
    func start() { last = DispatchTime.now().uptimeNanoseconds }
    func lap(_ stage: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        let dt = Double(now - last) / 1e9
        last = now
        if let i = seconds.firstIndex(where: { $0.stage == stage }) { seconds[i].seconds += dt }
        else { seconds.append((stage, dt)) }
    }
}

/// Score blocks for attention workers: one per concurrently running (sequence, head) item,
/// allocated on first use and reused by every layer of the call.
private final class AttentionScratch: @unchecked Sendable {
    let blockFloats: Int
    private var free: [UnsafeMutablePointer<Float>] = [], all: [UnsafeMutablePointer<Float>] = []
    private let lock = NSLock()
    init(blockFloats: Int) { self.blockFloats = max(blockFloats, 1) }
    func take() -> UnsafeMutablePointer<Float> {
        lock.lock(); defer { lock.unlock() }
        if let p = free.popLast() { return p }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: blockFloats)
        all.append(p)
        return p
    }
    func give(_ p: UnsafeMutablePointer<Float>) { lock.lock(); free.append(p); lock.unlock() }
    deinit { for p in all { p.deallocate() } }
}

/// OpenBLAS's thread count is process-wide. Sections that run single-threaded sgemm on
/// several threads of their own switch it to 1 while any of them runs; the count of
/// active sections makes concurrent encoders restore it only when the last one leaves.
enum OpenBLASThreads {
    nonisolated(unsafe) private static var active = 0
    nonisolated(unsafe) private static var saved: Int32 = 1
    private static let lock = NSLock()

    static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        // Already 1 (`BLASKernels.stopWorkerThreads`): setting it again could start the
        // stopped workers anew.
        if active == 0 { saved = openblas_get_num_threads(); if saved != 1 { openblas_set_num_threads(1) } }
        active += 1
        lock.unlock()
        defer {
            lock.lock()
            active -= 1
            if active == 0 && saved != 1 { openblas_set_num_threads(saved) }
            lock.unlock()
        }
        return try body()
    }
}

// MARK: - Encoder

/// A loaded model: config, encoder weights and heads. Immutable, so one instance serves
/// concurrent callers; each call allocates its own scratch.
final class Encoder: @unchecked Sendable {
    let config: ModelConfig
    let weights: EncoderWeights
    let heads: HeadWeights
    /// How the linear layers were packed (weights and heads were loaded with it).
    let precision: Precision

    init(config: ModelConfig, weights: EncoderWeights, heads: HeadWeights, precision: Precision = .float32) {
        self.config = config
        self.weights = weights
        self.heads = heads
        self.precision = precision
    }

    /// Sequences of at most this many tokens (with `<s>` and `</s>`: queries) run the short
    /// path, in a forward pass of their own when batched with longer ones.
    static let shortSequenceLimit = 64

    /// The linear-layer kernels of a forward pass (see the file header).
    enum Path { case long, short }

    /// The path a packed batch takes when not told: short when every sequence is short.
    static func path(for sequences: [[Int32]]) -> Path {
        sequences.allSatisfy { $0.count <= shortSequenceLimit } ? .short : .long
    }

    /// Runs the encoder on a batch and returns each sequence's outputs, in order.
    /// `sequences` hold token ids with specials, each at most `config.maxSequenceLength` long.
    /// Short and long sequences run in separate packed passes, so a short sequence always
    /// takes the short path and its outputs never depend on its batch.
    func encode(_ sequences: [[Int32]], options: EncodeOptions) -> [Embedding] {
        let short = sequences.indices.filter { sequences[$0].count <= Self.shortSequenceLimit }
        if short.count == sequences.count || short.isEmpty {
            return encodePacked(sequences, path: short.isEmpty ? .long : .short, options: options)
        }
        let long = sequences.indices.filter { sequences[$0].count > Self.shortSequenceLimit }
        var results = [Embedding?](repeating: nil, count: sequences.count)
        for (indices, path) in [(long, Path.long), (short, .short)] {
            let outputs = encodePacked(indices.map { sequences[$0] }, path: path, options: options)
            for (i, out) in zip(indices, outputs) { results[i] = out }
        }
        return results.map { $0! }
    }

    /// One packed forward pass on `path`, then the heads.
    func encodePacked(_ sequences: [[Int32]], path: Path, options: EncodeOptions) -> [Embedding] {
        let total = sequences.reduce(0) { $0 + $1.count }
        guard total > 0 else { return sequences.map { Embedding(tokenIDs: $0) } }
        let h = config.hiddenSize
        let hidden = Scratch(total * h)                       // (T, H) last hidden state
        forward(sequences, total: total, into: hidden.buffer, path: path)
        return runHeads(sequences, hidden: hidden.buffer, path: path, options: options)
    }

    /// The encoder: embeddings, then `layerCount` post-LayerNorm transformer blocks.
    /// hiddenOut: (T, H). `path` defaults to `Encoder.path(for:)`.
    func forward(_ sequences: [[Int32]], total t: Int, into x: UnsafeMutablePointer<Float>,
                 path: Path? = nil, clock: StageClock? = nil) {
        let c = config, h = c.hiddenSize, inter = c.intermediateSize
        let w = weights
        let path = path ?? Self.path(for: sequences)
        clock?.start()

        // Embeddings: word[id] + position[pos] + token_type[0], then LayerNorm.
        // RoBERTa positions (create_position_ids_from_input_ids): a token equal to the pad
        // id gets position pad; every other token pad + (count of non-pad tokens so far).
        // Batches are packed, so a pad id only occurs as a literal "<pad>" in the text,
        // which the attention mask of the Hugging Face tokenizer still attends to.
        // The word table is read a row at a time: a float16 table is converted per row,
        // never whole (250,002 rows, of which a query needs a few).
        let pos = w.positionEmbeddings.pointer, type0 = w.tokenTypeEmbeddings.pointer
        let wordRow = Scratch(h)
        let pad = Int32(c.padTokenID)
        var row = 0
        for seq in sequences {
            var nonPad = 0
            for id in seq {
                let position: Int
                if id == pad { position = c.padTokenID } else { nonPad += 1; position = c.padTokenID + nonPad }
                let dst = x + row * h
                let wr = w.wordEmbeddings.row(Int(id), scratch: wordRow.buffer), pr = pos + position * h
                for j in 0..<h { dst[j] = wr[j] + pr[j] + type0[j] }
                row += 1
            }
        }
        layerNorm(x, residual: nil, rows: t, w.embeddingNorm)
        clock?.lap("embeddings")

        // Per-layer scratch, reused by every layer.
        let q = Scratch(t * h), k = Scratch(t * h), v = Scratch(t * h)
        let context = Scratch(t * h), projected = Scratch(t * h), ffn = Scratch(t * inter)
        let longest = sequences.map(\.count).max() ?? 0
        let scores = AttentionScratch(blockFloats: Self.attentionBlockRows(length: longest) * longest)
        let converted: ConversionScratch? = precision == .float32 ? nil : ConversionScratch(rows: t, inFeatures: max(h, inter))

        for layer in w.layers {
            // q, k, v = x·Wqᵀ + bq, …                        each (T, H)
            switch path {
            case .long:
                linear(x, rows: t, layer.query, into: q.buffer, scratch: converted)
                linear(x, rows: t, layer.key, into: k.buffer, scratch: converted)
                linear(x, rows: t, layer.value, into: v.buffer, scratch: converted)
            case .short:
                linearShort(x, rows: t, [ShortOutput(layer: layer.query, y: q.buffer), ShortOutput(layer: layer.key, y: k.buffer),
                                         ShortOutput(layer: layer.value, y: v.buffer)], scratch: converted)
            }
            clock?.lap("qkv")
            // context = softmax(q·kᵀ/√d)·v per sequence and head   (T, H)
            switch path {
            case .long: attention(sequences, q: q.buffer, k: k.buffer, v: v.buffer, into: context.buffer, scratch: scores)
            case .short: attentionShort(sequences, q: q.buffer, k: k.buffer, v: v.buffer, into: context.buffer)
            }
            clock?.lap("attention")
            // x = LayerNorm(context·Woᵀ + bo + x)
            switch path {
            case .long: linear(context.buffer, rows: t, layer.attentionOutput, into: projected.buffer, scratch: converted)
            case .short: linearShort(context.buffer, rows: t, [ShortOutput(layer: layer.attentionOutput, y: projected.buffer)], scratch: converted)
            }
            layerNorm(x, residual: projected.buffer, rows: t, layer.attentionNorm)
            clock?.lap("attention output + norm")
            // ffn = gelu(x·Wiᵀ + bi)                           (T, I)
            switch path {
            case .long:
                linear(x, rows: t, layer.intermediate, into: ffn.buffer, addingBias: false, scratch: converted)
                let ffnOut = ffn.buffer, ffnBias = layer.intermediate.bias.pointer
                forRowBlocks(t, cols: inter) { r0, n in m3_bias_gelu(ffnOut + r0 * inter, ffnBias, n, inter) }
            case .short:
                linearShort(x, rows: t, [ShortOutput(layer: layer.intermediate, y: ffn.buffer, gelu: true)], scratch: converted)
            }
            clock?.lap("ffn up + gelu")
            // x = LayerNorm(ffn·Wo2ᵀ + bo2 + x)
            switch path {
            case .long: linear(ffn.buffer, rows: t, layer.output, into: projected.buffer, scratch: converted)
            case .short: linearShort(ffn.buffer, rows: t, [ShortOutput(layer: layer.output, y: projected.buffer)], scratch: converted)
            }
            layerNorm(x, residual: projected.buffer, rows: t, layer.outputNorm)
            clock?.lap("ffn down + norm")
        }
    }

    /// x (rows, H) ← LayerNorm(x + residual), rows split across cores.
    private func layerNorm(_ x: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?, rows: Int, _ norm: LayerNorm) {
        let h = config.hiddenSize, eps = config.layerNormEps
        let gamma = norm.weight.pointer, beta = norm.bias.pointer
        forRowBlocks(rows, cols: h) { r0, n in
            m3_add_layernorm(x + r0 * h, residual.map { $0 + r0 * h }, n, h, gamma, beta, eps)
        }
    }

    /// Query rows per attention block: at least 256 (thinner blocks cost OpenBLAS ~25% in
    /// packing overhead, measured with d = 64), else up to a 1 MB (rows, L) block, so an
    /// 8192-token input holds 8 MB of scores per worker, never a full L×L matrix per head.
    static func attentionBlockRows(length: Int) -> Int {
        guard length > 0 else { return 1 }
        return min(length, max(256, (256 << 10) / length))
    }

    /// Scaled dot-product attention, per sequence and head, in blocks of query rows.
    /// q, k, v, out: (T, H), head `hd` occupying columns hd·d ..< (hd+1)·d.
    ///
    /// The (sequence, head) pairs are spread over the cores, each pair computed by one
    /// thread with single-threaded sgemm: with d = 64 the products are too thin for
    /// OpenBLAS to split well, and one thread per pair needs no synchronisation at all.
    private func attention(_ sequences: [[Int32]], q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                           v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                           scratch: AttentionScratch) {
        let h = config.hiddenSize, d = config.headDim, heads = config.headCount
        let scale = 1 / Float(d).squareRoot()
        var firstRows: [Int] = [], start = 0
        for seq in sequences { firstRows.append(start); start += seq.count }
        let starts = firstRows
        // The items write disjoint (rows, head) slices of `out`.
        let buffers = UncheckedSendable((q: q, k: k, v: v, out: out))
        // Longest sequences first, so the last items to finish are short ones.
        let order = sequences.indices.sorted { sequences[$0].count > sequences[$1].count }
        let items = order.flatMap { s in (0..<heads).map { (s, $0) } }

        OpenBLASThreads.singleThreaded {
            DispatchQueue.concurrentPerform(iterations: items.count) { item in
                let (seqIndex, head) = items[item]
                let (q, k, v, out) = buffers.value
                let len = sequences[seqIndex].count, first = starts[seqIndex], col = head * d
                let blockRows = Self.attentionBlockRows(length: len)
                let kh = k + first * h + col, vh = v + first * h + col
                let s = scratch.take()
                defer { scratch.give(s) }
                var r0 = 0
                while r0 < len {
                    let rows = min(blockRows, len - r0)
                    let qh = q + (first + r0) * h + col
                    // s (rows, len) = scale · q_blk (rows, d) · k_hᵀ (d, len)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(len), Int32(d),
                                scale, qh, Int32(h), kh, Int32(h), 0, s, Int32(len))
                    m3_softmax_rows(s, rows, len)
                    // out_blk (rows, d) = s (rows, len) · v_h (len, d)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(d), Int32(len),
                                1, s, Int32(len), vh, Int32(h), 0, out + (first + r0) * h + col, Int32(h))
                    r0 += rows
                }
            }
        }
    }

    /// The short path's attention: m3_attention_head per (sequence, head), on the calling
    /// thread when there is little of it (one query: ~16 K multiply-adds per head, less than
    /// handing work to another core costs), else spread over the cores.
    private func attentionShort(_ sequences: [[Int32]], q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let h = config.hiddenSize, d = config.headDim, heads = config.headCount
        let scale = 1 / Float(d).squareRoot()
        var items: [(first: Int, length: Int, column: Int)] = [], start = 0
        for seq in sequences {
            for head in 0..<heads { items.append((start, seq.count, head * d)) }
            start += seq.count
        }
        let longest = sequences.map(\.count).max() ?? 0
        let work = sequences.reduce(0) { $0 + $1.count * $1.count } * h
        // The items write disjoint (rows, head) slices of `out`.
        let shared = UncheckedSendable((q: q, k: k, v: v, out: out, items: items))
        let run: @Sendable (Int) -> Void = { i in
            let (q, k, v, out, items) = shared.value
            let (first, len, col) = items[i]
            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(longest, 1)) { scores in
                let o = first * h + col
                m3_attention_head(q + o, k + o, v + o, h, len, d, scale, out + o, scores.baseAddress)
            }
        }
        if work >= 1 << 21 && ProcessInfo.processInfo.activeProcessorCount > 1 {
            parallelFor(items.count, run)
        } else {
            for i in items.indices { run(i) }
        }
    }

    // MARK: - Heads

    /// Dense, sparse and ColBERT outputs from the last hidden state x (T, H).
    private func runHeads(_ sequences: [[Int32]], hidden x: UnsafeMutablePointer<Float>, path: Path,
                          options: EncodeOptions) -> [Embedding] {
        let h = config.hiddenSize, t = sequences.reduce(0) { $0 + $1.count }

        // Sparse: w (T) = relu(x·wsᵀ + bs), computed for all rows in one pass (a row's weight
        // from that row alone, which sgemv does not promise).
        var tokenWeights: [Float] = []
        if options.outputs.contains(.sparse) {
            tokenWeights = [Float](repeating: 0, count: t)
            tokenWeights.withUnsafeMutableBufferPointer { wt in
                m3_f32_linear(x, t, h, h, heads.sparse.weight!.pointer, h, nil, wt.baseAddress, 1, 0, 1)
                let b = heads.sparse.bias.pointer[0]
                for i in 0..<t { wt[i] = max(wt[i] + b, 0) }
            }
        }

        // Short path: ColBERT's linear for all rows at once (one pass over its weight; the
        // `<s>` rows are computed and dropped), row by row identical to a call per sequence.
        var colbertRows: Scratch? = nil
        if path == .short && options.outputs.contains(.colbert) {
            let all = Scratch(t * h)
            linearShort(x, rows: t, [ShortOutput(layer: heads.colbert, y: all.buffer)], scratch: nil)
            colbertRows = all
        }

        var results: [Embedding] = []
        results.reserveCapacity(sequences.count)
        var start = 0
        for seq in sequences {
            let len = seq.count
            var out = Embedding(tokenIDs: seq)
            let rows = x + start * h
            if options.outputs.contains(.dense) {
                out.dense = pool(rows, length: len, options: options)
            }
            if options.outputs.contains(.sparse) {
                out.sparse = sparseVector(ids: seq, weights: tokenWeights[start ..< start + len])
            }
            if options.outputs.contains(.colbert) {
                out.colbert = colbertVectors(rows, length: len, projected: colbertRows.map { $0.buffer + start * h },
                                             normalize: options.normalize)
            }
            results.append(out)
            start += len
        }
        return results
    }

    /// Dense vector from one sequence's rows (len, H): CLS, mean or max, then L2-normalised.
    private func pool(_ rows: UnsafePointer<Float>, length len: Int, options: EncodeOptions) -> [Float] {
        let h = config.hiddenSize
        var v = [Float](repeating: 0, count: h)
        switch options.pooling {
        case .cls:
            for j in 0..<h { v[j] = rows[j] }
        case .mean:  // FlagEmbedding's mean: over all real tokens, specials included
            for r in 0..<len { for j in 0..<h { v[j] += rows[r * h + j] } }
            let inv = 1 / Float(len)
            for j in 0..<h { v[j] *= inv }
        case .max:
            for j in 0..<h { v[j] = rows[j] }
            for r in 1..<max(len, 1) { for j in 0..<h { v[j] = max(v[j], rows[r * h + j]) } }
        }
        if options.normalize { v.withUnsafeMutableBufferPointer { m3_l2_normalize_rows($0.baseAddress, 1, h) } }
        return v
    }

    /// Max weight per token id; `<s>`, `<pad>`, `</s>`, `<unk>` dropped; only weights > 0.
    private func sparseVector(ids: [Int32], weights: ArraySlice<Float>) -> SparseVector {
        var pairs: [(Int32, Float)] = []
        pairs.reserveCapacity(ids.count)
        for (id, w) in zip(ids, weights) where w > 0 && !Self.unusedTokens.contains(id) {
            pairs.append((id, w))
        }
        return SparseVector(maxOf: pairs)
    }

    /// FlagEmbedding's unused_tokens: cls, eos, pad, unk.
    static let unusedTokens: Set<Int32> = [0, 1, 2, 3]

    /// colbert_linear(h[1..<len]) (drops `<s>`, keeps `</s>`), each row L2-normalised.
    /// `projected`: the sequence's rows (len, H) already through colbert_linear, or nil.
    private func colbertVectors(_ rows: UnsafePointer<Float>, length len: Int, projected: UnsafePointer<Float>?,
                                normalize: Bool) -> MultiVector {
        let h = config.hiddenSize, n = max(len - 1, 0)
        var values = [Float](repeating: 0, count: n * h)
        if n > 0 {
            values.withUnsafeMutableBufferPointer { out in
                if let projected {
                    out.baseAddress!.update(from: projected + h, count: n * h)
                } else {
                    linear(rows + h, rows: n, heads.colbert, into: out.baseAddress!)
                }
                if normalize { m3_l2_normalize_rows(out.baseAddress, n, h) }
            }
        }
        return MultiVector(dimension: h, values: values)
    }
}


extension BGEM3 {
    /// Encodes valid token ids with every sequence forced onto one path (benchmarks' A/B of
    /// the short path; `encode(tokenIDs:)` chooses per sequence).
    package func encode(tokenIDs sequences: [[Int32]], shortPath: Bool, options: EncodeOptions = EncodeOptions()) -> [Embedding] {
        encoder.encodePacked(sequences, path: shortPath ? .short : .long, options: options)
    }
}
