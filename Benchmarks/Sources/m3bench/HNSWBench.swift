import ArgumentParser

// Placeholder until the benchmark lands (replaced in this session, never committed as is).
struct HNSWBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hnsw")
    func run() throws { throw ValidationError("hnsw: not yet written") }
}
