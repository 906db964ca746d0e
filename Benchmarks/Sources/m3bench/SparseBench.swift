import ArgumentParser

// Placeholder until the benchmark lands (replaced in this session, never committed as is).
struct SparseBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sparse")
    func run() throws { throw ValidationError("sparse: not yet written") }
}
