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
        the CPU lacks the instructions --precision asks for).
        """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var encoding: EncodingOptions

    @Option(name: .long, help: "Outputs to compute, comma-separated: dense,sparse,colbert. Heads not asked for are not run.")
    var outputs: String = "dense,sparse,colbert"

    struct Line: Decodable { let text: String }

    func run() throws {
        let kinds = try parseOutputs(outputs)
        let model = try modelOptions.load()
        let lines = try readJSONLines(Line.self, what: "with a \"text\" string")
        let options = encoding.encodeOptions(outputs: kinds)
        var writer = JSONWriter()
        // Chunks keep memory bounded on long inputs; order is kept within and across chunks.
        let chunk = 256
        var start = 0
        while start < lines.count {
            let texts = lines[start ..< min(start + chunk, lines.count)].map(\.text)
            let embeddings = try model.encode(texts, options: options)
            for e in embeddings {
                write(e, precision: model.precision, to: &writer)
                writer.flush()
            }
            start += chunk
        }
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
