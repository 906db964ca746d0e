import ArgumentParser

// Placeholder until the benchmark lands (replaced in this session, never committed as is).
struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm")
    func run() throws { throw ValidationError("gemm: not yet written") }
}
