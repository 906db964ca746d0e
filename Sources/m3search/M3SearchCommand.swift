import ArgumentParser
import Foundation
import M3Search

@main
struct M3SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m3search",
        abstract: "Hybrid search with BGE-M3: dense, sparse and ColBERT, natively in Swift.",
        subcommands: [IndexCommand.self, QueryCommand.self, ServeCommand.self, CheckCommand.self, Encode.self, Score.self,
                      EvalCommand.self, TuneCommand.self, ExportCommand.self, ImportCommand.self])
}

/// Options shared by every command that loads the model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "BGE-M3 model folder (config.json, weights, colbert_linear.pt, sparse_linear.pt, sentencepiece.bpe.model).",
        discussion: "Defaults to $M3SEARCH_MODEL, then the Hugging Face cache's BAAI/bge-m3.", valueName: "dir"))
    var model: String?

    @Option(name: .long, help: "Longest token sequence per text, <s> and </s> included; longer texts are truncated.")
    var maxLength: Int = 8192

    @Option(name: .long, help: "Dense pooling: cls (BGE-M3's training), mean or max.")
    var pooling: PoolingArgument = .cls

    @Flag(name: .long, help: "Do not L2-normalise the dense and ColBERT vectors.")
    var noNormalize = false

    @Option(name: .long, help: "Tokens per packed batch (texts are sorted by length first).")
    var batchTokens: Int = 16384

    @Option(name: .long, help: precisionHelp)
    var precision: PrecisionArgument = PrecisionArgument(.float32)

    func load() throws -> BGEM3 {
        try loadModel(explicit: model, precision: precision.value)
    }

    func encodeOptions(outputs: OutputKinds) -> EncodeOptions {
        EncodeOptions(maxLength: maxLength, outputs: outputs, pooling: pooling.value,
                      normalize: !noNormalize, batchTokens: batchTokens)
    }
}

let precisionHelp = ArgumentHelp(
    "Linear-layer arithmetic: f32, bf16 (AVX512-BF16) or int8 (AVX512-VNNI); float32 when the CPU lacks it.",
    valueName: "f32|bf16|int8")

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

/// Loads the model in `precision`, saying on stderr when the CPU forces float32 instead.
func loadModel(explicit folder: String?, precision: Precision) throws -> BGEM3 {
    let model = try BGEM3(folder: BGEM3.locate(explicit: folder), precision: precision)
    if let why = model.precisionFallback { FileHandle.standardError.write(Data("note: \(why)\n".utf8)) }
    return model
}

enum PoolingArgument: String, ExpressibleByArgument, CaseIterable {
    case cls, mean, max
    var value: Pooling { Pooling(rawValue: rawValue)! }
}

/// Reports errors as one clear line on stderr, with exit code 1 (2 for usage errors).
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("m3search: " + message + "\n").utf8))
    exit(1)
}

/// Reads stdin as JSON Lines, skipping blank lines, and decodes each line.
func readJSONLines<T: Decodable>(_ type: T.Type, what: String) throws -> [T] {
    let data = FileHandle.standardInput.readDataToEndOfFile()
    let decoder = JSONDecoder()
    var items: [T] = []
    var lineNumber = 0
    for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        lineNumber += 1
        if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
        do {
            items.append(try decoder.decode(T.self, from: Data(line)))
        } catch {
            throw ValidationError("stdin line \(lineNumber) is not a JSON object \(what)")
        }
    }
    return items
}
