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
    /// Identifies the model's numbers: a hash of config.json, both head files, and the
    /// weights file's size and sampled contents. Indexes record it to refuse another model.
    public let identity: String
    /// The precision the linear layers run in: the one asked for, or float32 when the CPU
    /// lacks the instructions (then `precisionFallback` says why).
    public var precision: Precision { encoder.precision }
    /// Why the asked-for precision was replaced by float32, or nil.
    public let precisionFallback: String?
    let encoder: Encoder

    /// The files of a model folder, as downloaded from Hugging Face.
    public enum File {
        public static let config = "config.json"
        public static let safetensors = "model.safetensors"
        public static let pytorch = "pytorch_model.bin"
        public static let colbertHead = "colbert_linear.pt"
        public static let sparseHead = "sparse_linear.pt"
        public static let sentencepiece = "sentencepiece.bpe.model"
    }

    /// Loads config, weights (model.safetensors, else pytorch_model.bin), both heads and
    /// the tokenizer. Throws `ModelError` naming the file (and tensor) at fault; unlike
    /// FlagEmbedding, a missing head file is an error, never a silent random head.
    ///
    /// `precision` packs the linear layers for the int8 (AVX512-VNNI) or bf16 (AVX512-BF16)
    /// kernels at load; on a CPU without them the model runs float32 and `precisionFallback`
    /// says why.
    public init(folder: String, precision requested: Precision = .float32) throws {
        self.folder = folder
        func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError.missingFile(path: folder, hint: "the model folder does not exist or is not a folder")
        }
        let config = try ModelConfig.load(path(File.config))

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

        let (precision, fallback) = requested.resolved()
        let weights = try EncoderWeights(WeightFile.load(weightsPath), config: config, precision: precision)
        let h = config.hiddenSize
        let colbertDict = try WeightFile.load(path(File.colbertHead))
        let sparseDict = try WeightFile.load(path(File.sparseHead))
        let heads = HeadWeights(colbert: try Linear(colbertDict, "", out: h, in: h, bare: true, precision: precision),
                                sparse: try Linear(sparseDict, "", out: 1, in: h, bare: true))
        // tokenizer.json (shipped with BAAI/bge-m3) carries the unigram scores in double
        // precision, which decides exact Viterbi ties the way the Hugging Face tokenizer does;
        // without it the float32 scores of sentencepiece.bpe.model are used.
        let tokenizerJSON = path("tokenizer.json")
        let tokenizer = try XLMRobertaTokenizer(modelPath: spm,
                                                tokenizerJSONPath: fm.fileExists(atPath: tokenizerJSON) ? tokenizerJSON : nil)
        if tokenizer.vocabularySize > config.vocabularySize {
            throw ModelError.invalidConfig(path: path(File.config), detail: "vocab_size \(config.vocabularySize) is smaller than the tokenizer's \(tokenizer.vocabularySize) ids")
        }
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = Encoder(config: config, weights: weights, heads: heads, precision: precision)
        self.precisionFallback = fallback
        self.identity = try Self.identity(files: [path(File.config), path(File.colbertHead), path(File.sparseHead), spm],
                                          weights: weightsPath)
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
        return results.map { $0! }
    }

    /// Runs the encoder (no heads) on one packed batch and returns wall seconds per stage.
    /// For benchmarks; `sequences` must be valid token ids.
    package func profileForward(_ sequences: [[Int32]]) -> [(stage: String, seconds: Double)] {
        let total = sequences.reduce(0) { $0 + $1.count }
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: max(total * config.hiddenSize, 1))
        defer { hidden.deallocate() }
        let clock = StageClock()
        encoder.forward(sequences, total: total, into: hidden, clock: clock)
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
}

extension BGEM3 {
    /// FNV-1a 64 over small files whole and over 64 evenly spaced 64 KiB blocks of the
    /// weights file (hashing 2.3 GB on every start would cost seconds).
    static func identity(files: [String], weights: String) throws -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<C: Collection>(_ bytes: C) where C.Element == UInt8 {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else {
                throw ModelError.missingFile(path: f, hint: "cannot read it")
            }
            mix(data)
        }
        guard let handle = FileHandle(forReadingAtPath: weights) else {
            throw ModelError.missingFile(path: weights, hint: "cannot read it")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        withUnsafeBytes(of: size.littleEndian) { mix($0) }
        let block: UInt64 = 65536, samples: UInt64 = 64
        for i in 0..<samples {
            let offset = size > block ? (size - block) * i / (samples - 1) : 0
            try? handle.seek(toOffset: offset)
            if let data = try? handle.read(upToCount: Int(block)) { mix(data) }
        }
        return String(format: "%016llx", h)
    }

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
