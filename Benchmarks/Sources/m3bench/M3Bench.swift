// m3bench: benchmark programs for m3search. Each subcommand prints its figures; the Python
// drivers in Benchmarks/ run it next to the peers and append to Benchmarks/results/.
// Never run in CI (timing belongs here, not in tests).
import ArgumentParser

@main
struct M3Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m3bench",
        abstract: "m3search benchmark programs (see BENCHMARKS.md).",
        subcommands: [HNSWBench.self, SparseBench.self, ColBERTBench.self, EndToEndBench.self, GEMMBench.self,
                      EncoderBench.self, StorageBench.self, LoadBench.self, ShortQueryBench.self,
                      HNSWWritesBench.self, HNSWOpenBench.self, SearchDuringWritesBench.self])
}
