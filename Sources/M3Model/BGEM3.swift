import Foundation
import M3Tokenizer

/// A BGE-M3 model loaded from a Hugging Face folder: tokenizer, encoder and heads.
///
/// ```swift
/// let model = try BGEM3(folder: BGEM3.locate(explicit: "/models/bge-m3"))
/// let [doc] = try model.encode(["BGE-M3 is a multilingual embedding model."])
/// print(doc.dense!.count, doc.sparse!.count, doc.colbert!.count)
/// ```
/// Loading memory-maps float32 weights in place. One instance is safe to share between
/// threads and tasks.
public final class BGEM3: Sendable {
    public let folder: String
    public let config: ModelConfig
    public let tokenizer: XLMRobertaTokenizer
    /// Identifies the model's numbers: "m3id2:" and a digest of every file that changes
    /// token ids or vectors (config.json, the weights, both heads, sentencepiece.bpe.model,
    /// tokenizer.json), each hashed whole. Indexes record it to refuse another model; see
    /// `matchIdentity(_:)` for identities recorded by older versions.
    public let identity: String
    /// Where the load's time went (for `--explain` and benchmarks).
    public let loadTimings: LoadTimings
    /// The precision the linear layers run in: the one asked for, or float32 when the CPU
    /// lacks the instructions (then `precisionFallback` says why).
    public var precision: Precision { encoder.precision }
    /// Why the asked-for precision was replaced by float32, or nil.
    public let precisionFallback: String?
    let encoder: Encoder
    /// model.safetensors or pytorch_model.bin, whichever was loaded.
    let weightsPath: String

    /// Sequences of at most this many tokens (with `<s>` and `</s>`) take the short-query
    /// path, which computes each row from that row alone: their outputs are bit for bit the
    /// same encoded alone or in any batch, in every precision. Longer ones take the packed
    /// sgemm path, whose last bits may depend on their batch. (A dynamic batcher groups the
    /// former and encodes the latter alone.)
    public static let batchInvariantMaxTokens = Encoder.shortSequenceLimit

    /// The files of a model folder, as downloaded from Hugging Face.
    public enum File {
        public static let config = "config.json"
        public static let safetensors = "model.safetensors"
        public static let pytorch = "pytorch_model.bin"
        public static let colbertHead = "colbert_linear.pt"
        public static let sparseHead = "sparse_linear.pt"
        public static let sentencepiece = "sentencepiece.bpe.model"
        public static let tokenizerJSON = "tokenizer.json"
    }

    /// Loads config, weights (model.safetensors, else pytorch_model.bin), both heads and
    /// the tokenizer. Throws `ModelError` (or `TokenizerError`) naming the file (and
    /// tensor) at fault; unlike FlagEmbedding, a missing head file is an error, never a
    /// silent random head.
    ///
    /// `precision` packs the linear layers for the int8 (AVX512-VNNI) or bf16 (AVX512-BF16)
    /// kernels at load; on a CPU without them the model runs float32 and `precisionFallback`
    /// says why.
    ///
    /// `cache` keeps what the first load derives (file digests, the verification of every
    /// weight, the tokenizer's tables, the int8 / bf16 packing) so later loads only map the
    /// files: see `ModelCache`.
    /// A cache that is missing, unwritable or damaged only makes the load slower.
    public init(folder: String, precision requested: Precision = .float32,
                cache: ModelCache = .fromEnvironment()) throws {
        let started = DispatchTime.now()
        var timings = LoadTimings()
        self.folder = folder
        func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError.missingFile(path: folder, hint: "the model folder does not exist or is not a folder")
        }
        let configBytes = try ModelFiles.read(path(File.config), limit: ModelConfig.maxFileBytes,
                                              missingHint: "every Hugging Face model folder has a config.json")
        let config = try ModelConfig.parse(configBytes, path: path(File.config))

        let weightsPath: String
        if fm.fileExists(atPath: path(File.safetensors)) {
            weightsPath = path(File.safetensors)
        } else if fm.fileExists(atPath: path(File.pytorch)) {
            weightsPath = path(File.pytorch)
        } else {
            throw ModelError.missingFile(path: path(File.safetensors),
                                         hint: "neither model.safetensors nor pytorch_model.bin is in the folder")
        }
        for head in [File.colbertHead, File.sparseHead] where !fm.fileExists(atPath: path(head)) {
            throw ModelError.missingFile(path: path(head), hint: "BGE-M3's \(head) head is required (it ships with BAAI/bge-m3); without it the sparse/ColBERT outputs would be meaningless")
        }
        let spm = path(File.sentencepiece)
        guard fm.fileExists(atPath: spm) else {
            throw ModelError.missingFile(path: spm, hint: "the XLM-R SentencePiece model ships with BAAI/bge-m3")
        }
        timings.config = started.secondsSince

        // tokenizer.json (shipped with BAAI/bge-m3) carries the unigram scores in double
        // precision, which decides exact Viterbi ties the way the Hugging Face tokenizer does;
        // without it the float32 scores of sentencepiece.bpe.model are used.
        var mark = DispatchTime.now()
        let digests = DigestCache(cache)
        let tokenizerJSON = path(File.tokenizerJSON)
        let loaded = try TokenizerLoader(cache: cache, digests: digests)
            .load(model: spm, tokenizerJSON: fm.fileExists(atPath: tokenizerJSON) ? tokenizerJSON : nil)
        let tokenizer = loaded.tokenizer
        timings.tokenizer = mark.secondsSince
        timings.tokenizerFromCache = loaded.fromCache

        // Weights: mapped; hashed and verified (finite values, zip CRCs) only when the
        // digest cache has not seen this version of the file.
        mark = DispatchTime.now()
        let weightsFile = try MappedFile(path: weightsPath)
        let weightsDict = try WeightFile.load(weightsFile)
        let heads = try [File.colbertHead, File.sparseHead].map { name in
            let file = try MappedFile(path: path(name))
            return (file: file, dict: try WeightFile.load(file))
        }
        timings.weights = mark.secondsSince

        mark = DispatchTime.now()
        let weightsKey = ModelFiles.cacheKey(weightsPath)
        let known = digests.lookup(weightsKey, stamp: weightsFile.stamp)
        let weightsDigest: Digest128
        if let known, known.verified {
            weightsDigest = known.digest
            timings.identityFromCache = true
        } else {
            try WeightFile.verifyChecksums(weightsFile)
            try weightsDict.verifyFinite()
            weightsDigest = weightsFile.withBytes { ContentHash.digest($0) }
            digests.store(weightsKey, FileRecord(stamp: weightsFile.stamp, digest: weightsDigest, verified: true))
        }
        // The heads are small (4 MB for BGE-M3): always hashed and verified.
        for head in heads {
            try WeightFile.verifyChecksums(head.file)
            try head.dict.verifyFinite()
        }
        timings.verification = mark.secondsSince

        // The identity first: the packed-weights cache is keyed by it.
        let identity = Self.identity(parts: [
            (File.config, ContentHash.digest(configBytes)),
            ((weightsPath as NSString).lastPathComponent, weightsDigest),
            (File.colbertHead, heads[0].file.withBytes { ContentHash.digest($0) }),
            (File.sparseHead, heads[1].file.withBytes { ContentHash.digest($0) }),
            (File.sentencepiece, loaded.modelDigest),
            (File.tokenizerJSON, loaded.tokenizerJSONDigest),
        ])

        mark = DispatchTime.now()
        let (precision, fallback) = requested.resolved()
        // int8 and bf16 map the packing of an earlier load from the cache, or pack now and
        // write it there (float32 packs nothing).
        let packer = WeightPacker(cache: cache, identity: identity, precision: precision,
                                  plan: "intermediate.dense \(precision.feedForwardUp(inFeatures: config.hiddenSize))", digests: digests)
        let weights = try EncoderWeights(weightsDict, config: config, precision: precision, packer: packer)
        try Self.checkUnused(weightsDict, config: config)
        // After the shape checks, so a vocab_size that disagrees with the weights names the tensor.
        if tokenizer.vocabularySize > config.vocabularySize {
            throw ModelError.invalidConfig(path: path(File.config), detail: "vocab_size \(config.vocabularySize) is smaller than the tokenizer's \(tokenizer.vocabularySize) ids")
        }
        let h = config.hiddenSize
        let headWeights = HeadWeights(colbert: try Linear(heads[0].dict, "colbert_linear", out: h, in: h, bare: true,
                                                          precision: precision, packer: packer),
                                      sparse: try Linear(heads[1].dict, "sparse_linear", out: 1, in: h, bare: true))
        packer.finish()
        timings.packing = mark.secondsSince
        timings.packingFromCache = packer.allCached

        self.identity = identity
        digests.save()
        self.config = config
        self.tokenizer = tokenizer
        self.weightsPath = weightsPath
        self.encoder = Encoder(config: config, weights: weights, heads: headWeights, precision: precision)
        self.precisionFallback = fallback
        timings.total = started.secondsSince
        self.loadTimings = timings
    }

    /// Encodes texts: tokenize, sort by length, pack into batches, run, restore order.
    public func encode(_ texts: [String], options: EncodeOptions = EncodeOptions()) throws -> [Embedding] {
        try validate(options)
        let maxLength = min(options.maxLength, config.maxSequenceLength)
        let ids = texts.map { tokenizer.encode($0, maxLength: maxLength) }
        return try encode(tokenIDs: ids, options: options)
    }

    /// Encodes already tokenized sequences (`<s>` … `</s>`); ids must be below vocab_size.
    public func encode(tokenIDs sequences: [[Int32]], options: EncodeOptions = EncodeOptions()) throws -> [Embedding] {
        try validate(options)
        for (i, seq) in sequences.enumerated() {
            if seq.count > config.maxSequenceLength {
                throw ModelError.invalidInput("sequence \(i) has \(seq.count) tokens; this model takes at most \(config.maxSequenceLength)")
            }
            if let bad = seq.first(where: { $0 < 0 || Int($0) >= config.vocabularySize }) {
                throw ModelError.invalidInput("sequence \(i) holds token id \(bad), outside the vocabulary of \(config.vocabularySize)")
            }
        }
        // Longest first, packed up to batchTokens tokens per batch.
        let order = sequences.indices.sorted { sequences[$0].count > sequences[$1].count }
        var results = [Embedding?](repeating: nil, count: sequences.count)
        var batch: [Int] = [], batchTokens = 0
        func flush() {
            guard !batch.isEmpty else { return }
            let outputs = encoder.encode(batch.map { sequences[$0] }, options: options)
            for (i, out) in zip(batch, outputs) { results[i] = out }
            batch.removeAll(keepingCapacity: true)
            batchTokens = 0
        }
        for i in order {
            let n = sequences[i].count
            if !batch.isEmpty && batchTokens + n > options.batchTokens { flush() }
            batch.append(i)
            batchTokens += n
        }
        flush()
        let embeddings = results.map { $0! }
        for (i, e) in embeddings.enumerated() { try Self.checkFinite(e, sequence: i) }
        return embeddings
    }

    /// NaN or infinity in an output means the arithmetic overflowed (weights far outside
    /// what training produces) or a weight was damaged after the load verified it: an
    /// index must never store such a vector, and scores computed from it are meaningless.
    static func checkFinite(_ e: Embedding, sequence: Int) throws {
        if let dense = e.dense, !dense.allSatisfy(\.isFinite) {
            throw ModelError.nonFiniteOutput(detail: "dense vector of text \(sequence)")
        }
        if let sparse = e.sparse, !sparse.weights.allSatisfy(\.isFinite) {
            throw ModelError.nonFiniteOutput(detail: "sparse weights of text \(sequence)")
        }
        if let colbert = e.colbert, !colbert.values.allSatisfy(\.isFinite) {
            throw ModelError.nonFiniteOutput(detail: "ColBERT vectors of text \(sequence)")
        }
    }

    /// Runs the encoder (no heads) on one packed batch and returns wall seconds per stage.
    /// For benchmarks; `sequences` must be valid token ids.
    package func profileForward(_ sequences: [[Int32]]) -> [(stage: String, seconds: Double)] {
        let total = sequences.reduce(0) { $0 + $1.count }
        let hidden = Scratch(total * config.hiddenSize)  // aligned as the encoder's own buffers
        let clock = StageClock()
        encoder.forward(sequences, total: total, into: hidden.buffer, clock: clock)
        return clock.seconds
    }

    private func validate(_ options: EncodeOptions) throws {
        if options.maxLength < 2 {
            throw ModelError.invalidInput("max length \(options.maxLength) leaves no room for <s> and </s>; use at least 2")
        }
        if options.batchTokens < 1 {
            throw ModelError.invalidInput("batch size \(options.batchTokens) tokens must be positive")
        }
    }

    /// `folder`/`name`.
    func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    /// Tensors of the encoder the config does not account for (layers beyond
    /// num_hidden_layers, misspelled names) mean config.json and the weights disagree:
    /// running would silently drop them. Other extras (a pooler, an LM head) are unused by
    /// BGE-M3 and ignored.
    static func checkUnused(_ dict: StateDict, config: ModelConfig) throws {
        let unused = dict.unrequestedNames.filter { name in
            let bare = name.hasPrefix("roberta.") ? String(name.dropFirst("roberta.".count)) : name
            return bare.hasPrefix("encoder.") || bare.hasPrefix("embeddings.")
        }
        guard !unused.isEmpty else { return }
        let layers = unused.compactMap { name -> Int? in
            guard let r = name.range(of: "encoder.layer.") else { return nil }
            return Int(name[r.upperBound...].prefix { $0.isNumber })
        }
        let hint = layers.max().map {
            "config.json says num_hidden_layers \(config.layerCount) but the weights have layers up to \($0); use the config.json that came with these weights"
        } ?? "check that config.json belongs to these weights"
        throw ModelError.unexpectedTensors(path: dict.path, names: unused, hint: hint)
    }
}

extension BGEM3 {
    /// The model folder to use: `explicit`, else $M3SEARCH_MODEL, else the
    /// Hugging Face cache's BAAI/bge-m3 snapshot. Throws `ModelError.modelNotFound`
    /// listing every place it looked, with how to download the model.
    public static func locate(explicit: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let explicit { return explicit }
        if let env = environment["M3SEARCH_MODEL"], !env.isEmpty { return env }
        var searched = ["$M3SEARCH_MODEL"]
        let hubRoots: [String] = {
            if let hub = environment["HF_HUB_CACHE"] ?? environment["HUGGINGFACE_HUB_CACHE"] { return [hub] }
            if let home = environment["HF_HOME"] { return [(home as NSString).appendingPathComponent("hub")] }
            let userHome = environment["HOME"] ?? NSHomeDirectory()
            return [(userHome as NSString).appendingPathComponent(".cache/huggingface/hub")]
        }()
        let fm = FileManager.default
        for root in hubRoots {
            let repo = (root as NSString).appendingPathComponent("models--BAAI--bge-m3")
            searched.append(repo)
            let snapshots = (repo as NSString).appendingPathComponent("snapshots")
            // Prefer the revision refs/main points at, then any complete snapshot.
            var candidates: [String] = []
            if let main = try? String(contentsOfFile: (repo as NSString).appendingPathComponent("refs/main"), encoding: .utf8) {
                candidates.append((snapshots as NSString).appendingPathComponent(main.trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            let all = ((try? fm.contentsOfDirectory(atPath: snapshots)) ?? []).sorted()
            candidates += all.map { (snapshots as NSString).appendingPathComponent($0) }
            if let found = candidates.first(where: { fm.fileExists(atPath: ($0 as NSString).appendingPathComponent(File.config)) }) {
                return found
            }
        }
        throw ModelError.modelNotFound(searched: searched)
    }
}
