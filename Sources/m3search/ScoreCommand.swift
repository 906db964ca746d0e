import ArgumentParser
import Foundation
import M3Search

/// `m3search score`: {"query", "passage"} lines in, FlagEmbedding's five scores out.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score query/passage pairs read as JSON Lines from stdin.",
        discussion: """
        Each input line is {"query": "…", "passage": "…"}. Each output line is
        {"dense": x, "sparse": x, "colbert": x, "sparse+dense": x, "colbert+sparse+dense": x},
        the last two fused as Σ wᵢ·sᵢ / Σ wᵢ (FlagEmbedding's formula).
        """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var encoding: EncodingOptions

    @Option(name: .long, help: "Fusion weights for dense,sparse,colbert.")
    var weights: String = "0.4,0.3,0.3"

    struct Pair: Decodable { let query: String; let passage: String }

    func run() throws {
        let w: FusionWeights
        do { w = try FusionWeights(parsing: weights) } catch { throw ValidationError("\(error)") }
        let model = try modelOptions.load()
        let pairs = try readJSONLines(Pair.self, what: "with \"query\" and \"passage\" strings")
        let options = encoding.encodeOptions(outputs: .all)
        var writer = JSONWriter()
        let chunk = 128
        var start = 0
        while start < pairs.count {
            let slice = Array(pairs[start ..< min(start + chunk, pairs.count)])
            let texts = slice.map { encoding.queryPrefix + $0.query } + slice.map { encoding.passagePrefix + $0.passage }
            let e = try model.encode(texts, options: options)
            for i in slice.indices {
                let q = e[i], p = e[slice.count + i]
                let dense = Scores.dense(q.dense!, p.dense!)
                let sparse = Scores.sparse(q.sparse!, p.sparse!)
                let colbert = Scores.colbert(q.colbert!, p.colbert!)
                let sd = Scores.fused([dense, sparse], weights: [w.dense, w.sparse])
                let all = Scores.fused([dense, sparse, colbert], weights: [w.dense, w.sparse, w.colbert])
                writer.raw("{\"dense\":"); writer.number(dense)
                writer.raw(",\"sparse\":"); writer.number(sparse)
                writer.raw(",\"colbert\":"); writer.number(colbert)
                writer.raw(",\"sparse+dense\":"); writer.number(sd)
                writer.raw(",\"colbert+sparse+dense\":"); writer.number(all)
                writer.raw("}\n")
                writer.flush()
            }
            start += chunk
        }
    }
}
