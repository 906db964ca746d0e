import ArgumentParser

// Placeholder until the benchmark lands (replaced in this session, never committed as is).
struct EndToEndBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "end-to-end")
    func run() throws { throw ValidationError("end-to-end: not yet written") }
}
