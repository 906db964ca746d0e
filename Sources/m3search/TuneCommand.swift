import ArgumentParser
import Foundation
import M3Search

/// `m3search tune`: grid search of the fusion weights on an evaluation set.
struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Grid-search the fusion weights (dense, sparse, ColBERT) on an evaluation set.",
        discussion: """
        Every point of the weight simplex with the given step (0.1: 66 points) is evaluated. Each query is \
        encoded once and its candidates scored once in all three modes; each grid point only re-fuses those \
        scores, so the whole grid costs little more than one `m3search eval`. --save stores the best weights \
        as the index's default: `m3search query` and library searches without explicit weights then use them.
        """)

    @OptionGroup var evaluation: EvaluationOptions

    @Option(name: .long, help: "Grid step; 1/step must be a whole number (0.1, 0.05, 0.25, …).")
    var step: Double = 0.1

    @Option(name: .long, help: ArgumentHelp("Metric to maximise: ndcg@K, recall@K or mrr@K.", valueName: "metric"))
    var metric: String = "ndcg@10"

    @Flag(name: .long, help: "Save the best weights as the index's default weights.")
    var save = false

    @Option(name: .long, help: "Grid points to list, best first.")
    var top: Int = 10

    @Flag(name: [.customShort("j"), .long], help: "Machine-readable JSON output.")
    var json = false

    func validate() throws {
        try evaluation.check()
        do { _ = try RankingMetric(parsing: metric) } catch { throw ValidationError("\(error)") }
        do { _ = try weightGrid(step: step) } catch { throw ValidationError("--step \(step): \(error)") }
        if top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        let target = try RankingMetric(parsing: metric)
        let grid = try weightGrid(step: step)
        let (index, set, pool) = try evaluation.load(writable: save, extra: [target])
        let metrics = evaluation.metrics.contains(target) ? evaluation.metrics : evaluation.metrics + [target]
        let t0 = Date()
        let defaults = index.defaultWeights
        let before = pool.evaluate(weights: defaults, metrics: metrics, qrels: set.qrels)
        let results = Self.rank(grid.map { ($0, pool.evaluate(weights: $0, metrics: metrics, qrels: set.qrels)) }, by: target)
        let fuseSeconds = Date().timeIntervalSince(t0)
        let best = results[0]
        if save { try index.setDefaultWeights(best.weights) }
        if json {
            var out = JSONWriter()
            out.raw("{\"metric\":"); out.string("\(target)"); out.raw(",\"queries\":\(pool.queryCount),\"grid_points\":\(grid.count)")
            out.raw(",\"best\":"); point(best.weights, best.values, metrics, &out)
            out.raw(",\"default\":"); point(defaults, before, metrics, &out)
            out.raw(",\"top\":[")
            for (i, r) in results.prefix(top).enumerated() {
                if i > 0 { out.raw(",") }
                point(r.weights, r.values, metrics, &out)
            }
            out.raw("],\"saved\":\(save),\"seconds\":{\"encode\":\(pool.encodeSeconds),\"score\":\(pool.scoreSeconds),\"fuse\":\(fuseSeconds)}}\n")
            out.flush()
            return
        }
        print("best weights (dense,sparse,colbert): \(weightsText(best.weights))  \(target) "
              + String(format: "%.4f", best.values[target]!)
              + "  (default \(weightsText(defaults)): " + String(format: "%.4f", before[target]!) + ")")
        print("rank  weights (d,s,c)    " + metrics.map { pad("\($0)", 11) }.joined())
        for (i, r) in results.prefix(top).enumerated() {
            print(pad("\(i + 1)", 6) + pad(weightsText(r.weights), 19) + metrics.map { pad(String(format: "%.4f", r.values[$0]!), 11) }.joined())
        }
        print(String(format: "%d grid points, %d queries, %d candidate chunks scored; encode %.2f s, scoring %.2f s, fusion of the grid %.3f s",
                     grid.count, pool.queryCount, pool.scoredChunks, pool.encodeSeconds, pool.scoreSeconds, fuseSeconds))
        if save { print("saved \(weightsText(best.weights)) as the default weights of \(evaluation.location.index)") }
    }

    /// Best first: the target metric, then nDCG, Recall and MRR at the standard cutoffs, then grid order.
    static func rank(_ points: [(FusionWeights, [RankingMetric: Double])], by target: RankingMetric)
        -> [(weights: FusionWeights, values: [RankingMetric: Double])] {
        points.enumerated().sorted { a, b in
            let keys = [target] + a.element.1.keys.sorted { "\($0)" < "\($1)" }
            for key in keys {
                let x = a.element.1[key] ?? 0, y = b.element.1[key] ?? 0
                if x != y { return x > y }
            }
            return a.offset < b.offset
        }.map { (weights: $0.element.0, values: $0.element.1) }
    }

    private func point(_ w: FusionWeights, _ values: [RankingMetric: Double], _ metrics: [RankingMetric], _ out: inout JSONWriter) {
        out.raw("{\"weights\":"); weightsJSON(w, &out)
        for m in metrics { out.raw(",\"\(m)\":\(values[m]!)") }
        out.raw("}")
    }
}
