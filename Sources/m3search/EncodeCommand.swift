import ArgumentParser
import Foundation
import M3Search

/// `m3search encode`: JSON Lines in ({"text": …}), one JSON object out per line, in order.
struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Encode texts read as JSON Lines from stdin.",
        discussion: """
        Each input line is {"text": "…"}. Each output line is
        {"input_ids": [...], "dense": [...], "sparse": {"<token id>": weight, ...}, "colbert": [[...], ...],
        "precision": "f32|bf16|int8"}, in input order; "precision" is the one actually used (float32 when \
        the CPU lacks the instructions --precision asks for). The prefix of --texts (--passage-prefix, or \
        --query-prefix with --texts query) is put before each text, as an index with that prefix does. Input is streamed: outputs are written as \
        inputs arrive. A line may hold at most 8 MiB (\(EncodeCommand.maxLineBytes) bytes); a longer one is refused \
        with its line number (the model reads at most 8,192 tokens of a text anyway).
        """)

    /// Longest input line: far more text than the 8,192 tokens the model reads, and
    /// holding much more would cost memory many times its size.
    static let maxLineBytes = 8 << 20

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var encoding: EncodingOptions

    @Option(name: .long, help: "Outputs to compute, comma-separated: dense,sparse,colbert. Heads not asked for are not run.")
    var outputs: String = "dense,sparse,colbert"

    enum TextKind: String, ExpressibleByArgument, CaseIterable { case passage, query }

    @Option(name: .long, help: "What the texts are: passage (prefixed with --passage-prefix) or query (with --query-prefix).")
    var texts: TextKind = .passage

    @Flag(name: .long, help: "Print the model's load times on stderr (stdout holds only the encodings).")
    var explain = false

    struct Line: Decodable { let text: String }

    func run() throws {
        let kinds = try parseOutputs(outputs)
        let model = try modelOptions.load()
        if explain { FileHandle.standardError.write(Data((model.loadTimings.description + "\n").utf8)) }
        let options = encoding.encodeOptions(outputs: kinds)
        let prefix = texts == .query ? encoding.queryPrefix : encoding.passagePrefix
        var writer = JSONWriter()
        // Batches of 256 lines keep memory bounded on long inputs; order is kept.
        var reader = LineReader(handle: .standardInput, maxLineBytes: Self.maxLineBytes)
        var batch: [String] = []
        func flush() throws {
            guard !batch.isEmpty else { return }
            for e in try model.encode(batch, options: options) {
                write(e, precision: model.precision, to: &writer)
                writer.flush()
            }
            batch.removeAll(keepingCapacity: true)
        }
        let decoder = JSONDecoder()
        while true {
            let line: [UInt8]
            do {
                guard let next = try reader.next() else { break }
                line = next
            } catch let tooLong as LineReader.LineTooLong {
                try flush()
                throw M3SearchError(.invalidInput, "stdin line \(tooLong.lineNumber) is longer than \(tooLong.limit) bytes (8 MiB), "
                                    + "the limit per line; split the text")
            }
            if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            guard let item = try? decoder.decode(Line.self, from: Data(line)) else {
                try flush()
                throw M3SearchError(.invalidInput, "stdin line \(reader.lineNumber) is not a JSON object with a \"text\" string")
            }
            batch.append(prefix + item.text)
            if batch.count == 256 { try flush() }
        }
        try flush()
    }

    private func write(_ e: Embedding, precision: Precision, to w: inout JSONWriter) {
        w.raw("{\"input_ids\":[")
        w.raw(e.tokenIDs.map(String.init).joined(separator: ","))
        w.raw("]")
        if let dense = e.dense {
            w.raw(",\"dense\":")
            w.floats(dense)
        }
        if let sparse = e.sparse {
            w.raw(",\"sparse\":{")
            for i in 0..<sparse.count {
                if i > 0 { w.raw(",") }
                w.raw("\"\(sparse.ids[i])\":")
                w.number(sparse.weights[i])
            }
            w.raw("}")
        }
        if let colbert = e.colbert {
            w.raw(",\"colbert\":[")
            for r in 0..<colbert.count {
                if r > 0 { w.raw(",") }
                w.floats(colbert[r])
            }
            w.raw("]")
        }
        w.raw(",\"precision\":\"\(precision)\"}\n")
    }
}

func parseOutputs(_ text: String) throws -> OutputKinds {
    var kinds: OutputKinds = []
    for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
        switch part {
        case "dense": kinds.insert(.dense)
        case "sparse", "lexical": kinds.insert(.sparse)
        case "colbert": kinds.insert(.colbert)
        default: throw ValidationError("unknown output \"\(part)\"; choose from dense, sparse, colbert")
        }
    }
    if kinds.isEmpty { throw ValidationError("--outputs names no output; choose from dense, sparse, colbert") }
    return kinds
}
