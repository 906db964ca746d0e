import ArgumentParser

// Placeholder until the benchmark lands (replaced in this session, never committed as is).
struct ColBERTBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "colbert")
    func run() throws { throw ValidationError("colbert: not yet written") }
}
