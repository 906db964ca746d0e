import ArgumentParser
import Foundation
import M3Search

@main
struct M3SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m3search",
        abstract: "Hybrid search with BGE-M3: dense, sparse and ColBERT, natively in Swift.",
        subcommands: [IndexCommand.self, QueryCommand.self, CheckCommand.self, Encode.self, Score.self])
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

    func load() throws -> BGEM3 {
        try BGEM3(folder: BGEM3.locate(explicit: model))
    }

    func encodeOptions(outputs: OutputKinds) -> EncodeOptions {
        EncodeOptions(maxLength: maxLength, outputs: outputs, pooling: pooling.value,
                      normalize: !noNormalize, batchTokens: batchTokens)
    }
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
