import ArgumentParser
import Foundation
import M3Search

// The option groups commands share. Each option is declared once, here.

/// Where indexes live unless --index says otherwise.
let defaultIndexPath = ProcessInfo.processInfo.environment["M3SEARCH_INDEX"] ?? "Indexes/default.m3index"

/// `--index`: the index file.
struct IndexPathOption: ParsableArguments {
    @Option(name: [.customShort("i"), .long], help: ArgumentHelp("Index file; $M3SEARCH_INDEX, when set, replaces the built-in value.", valueName: "index"),
            completion: .file())
    var index: String = defaultIndexPath

    /// Stops early, before loading a model, when the index does not exist.
    func requireExisting() throws {
        guard FileManager.default.fileExists(atPath: index) else { throw M3SearchError(StoreError.missing(path: index)) }
        try requireRegularFile()
    }

    /// Stops early, before loading a model, when the path holds a directory, FIFO or device.
    func requireRegularFile() throws {
        guard FileManager.default.fileExists(atPath: index) else { return }
        do { try IndexStore.requireRegularFile(index) } catch { throw M3SearchError(error) }
    }

    var isWritable: Bool { FileManager.default.isWritableFile(atPath: index) }
}

/// `--model` and `--precision`: the model that encodes, and its arithmetic.
struct ModelOptions: ParsableArguments {
    @Option(name: [.customShort("m"), .long], help: ArgumentHelp(
        "BGE-M3 model folder (config.json, weights, colbert_linear.pt, sparse_linear.pt, sentencepiece.bpe.model); an index accepts only the model it was built with.",
        discussion: "Defaults to $M3SEARCH_MODEL, then the Hugging Face cache's BAAI/bge-m3.", valueName: "dir"),
            completion: .directory)
    var model: String?

    @Option(name: .long, help: ArgumentHelp(
        "Linear-layer arithmetic: f32, bf16 (AVX512-BF16) or int8 (AVX512-VNNI); float32 when the CPU lacks it.",
        valueName: "f32|bf16|int8"))
    var precision: PrecisionArgument = PrecisionArgument(.float32)

    /// Loads the model in the asked precision, saying on stderr when the CPU forces float32 instead.
    func load() throws -> BGEM3 {
        let model = try BGEM3(folder: BGEM3.locate(explicit: model), precision: precision.value)
        if let why = model.precisionFallback { note(why) }
        return model
    }
}

/// `--index`, `--model` and `--precision`: an index and the model that encodes for it.
struct IndexLocation: ParsableArguments {
    @OptionGroup var path: IndexPathOption
    @OptionGroup var modelOptions: ModelOptions

    var index: String { path.index }

    /// Opens the index with its model (created when absent, unless `options.create` is false),
    /// and says its notes on stderr unless `quiet` (then call `announce`).
    func open(_ options: IndexOptions = IndexOptions(), quiet: Bool = false) throws -> SearchIndex {
        try path.requireRegularFile()
        let opened = try SearchIndex(path: index, model: try modelOptions.load(), options: options)
        if !quiet { announce(opened) }
        return opened
    }

    /// Says an open index's notes on stderr.
    func announce(_ opened: SearchIndex) {
        noteIdentityUpgrade(opened)
        for line in opened.notes { note(line) }
    }
}

/// Says on stderr when opening replaced the index's first-generation model identity with
/// identity v2 (`SearchIndex.identityUpgrade`); it happens once per index.
func noteIdentityUpgrade(_ index: SearchIndex) {
    guard index.identityUpgrade == .upgraded else { return }
    note("upgraded the index's model identity to v2 (\(index.path)); m3search releases before v2 will refuse it as another model's")
}

/// How `encode` and `score` run the model on texts.
struct EncodingOptions: ParsableArguments {
    @Option(name: .long, help: "Longest token sequence per text, <s> and </s> included; longer texts are truncated.")
    var maxLength: Int = 8192

    @Option(name: .long, help: "Dense pooling: cls (BGE-M3's training), mean or max.")
    var pooling: Pooling = .cls

    @Flag(name: .long, help: "Do not L2-normalise the dense and ColBERT vectors.")
    var noNormalize = false

    @Option(name: .long, help: ArgumentHelp("Text put before every query, e.g. \"query: \" for e5 models (as `index --query-prefix`).",
                                            valueName: "text"))
    var queryPrefix: String = ""

    @Option(name: .long, help: ArgumentHelp("Text put before every passage, e.g. \"passage: \" for e5 models (as `index --passage-prefix`).",
                                            valueName: "text"))
    var passagePrefix: String = ""

    @Option(name: .long, help: "Tokens per packed batch (texts are sorted by length first).")
    var batchTokens: Int = 16384

    func encodeOptions(outputs: OutputKinds) -> EncodeOptions {
        EncodeOptions(maxLength: maxLength, outputs: outputs, pooling: pooling, normalize: !noNormalize, batchTokens: batchTokens)
    }
}

/// --precision f32|fp32|float32, bf16|bfloat16, int8.
struct PrecisionArgument: ExpressibleByArgument {
    let value: Precision
    init(_ value: Precision) { self.value = value }
    init?(argument: String) {
        guard let p = Precision(argument) else { return nil }
        value = p
    }
    var defaultValueDescription: String { value.description }
}

extension Pooling: ExpressibleByArgument {}
extension SearchOptions.Mode: ExpressibleByArgument {}
extension SearchOptions.Fusion: ExpressibleByArgument {}

/// A note on stderr (never an error).
func note(_ message: String) {
    FileHandle.standardError.write(Data("note: \(message)\n".utf8))
}
