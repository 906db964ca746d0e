import ArgumentParser
import Foundation
import M3Model

/// `m3bench load`: where a model load spends its time (`BGEM3.loadTimings`), first with no
/// cache (every load hashes, verifies and builds the tokenizer), then with a fresh cache
/// folder (its first load fills it), then from that cache. Medians over `--runs` loads.
///
///   .build/release/m3bench load --model Fixtures/models/tiny-safetensors
///   .build/release/m3bench load --model Fixtures/generated/bge-m3-full-random --runs 3
struct LoadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load", abstract: "Model load time by stage: uncached, first cached, cached (ms).")

    @Option(help: "Model folder.") var model: String
    @Option(help: "Loads per mode (median reported).") var runs: Int = 5
    @Option(help: "Precision to pack: f32, bf16 or int8.") var precision: String = "f32"
    @Option(help: "JSON Lines file the record is appended to.") var output: String = "Benchmarks/results/load.jsonl"

    func run() throws {
        guard let precision = Precision(precision) else { throw ValidationError("unknown precision \(self.precision)") }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("m3bench-load-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let cache = ModelCache(directory: scratch)

        var modes: [(name: String, timings: [LoadTimings])] = []
        modes.append(("uncached", try (0..<runs).map { _ in try BGEM3(folder: model, precision: precision, cache: .disabled).loadTimings }))
        modes.append(("first cached", [try BGEM3(folder: model, precision: precision, cache: cache).loadTimings]))
        modes.append(("cached", try (0..<runs).map { _ in try BGEM3(folder: model, precision: precision, cache: cache).loadTimings }))

        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] * 1000 }
        let stages: [(String, KeyPath<LoadTimings, Double>)] = [
            ("config", \.config), ("tokenizer", \.tokenizer), ("weights", \.weights),
            ("verification", \.verification), ("packing", \.packing), ("total", \.total)]
        print("model \(model), precision \(precision), \(runs) runs (median ms)")
        print("mode".padding(toLength: 14, withPad: " ", startingAt: 0) + stages.map { $0.0.padding(toLength: 13, withPad: " ", startingAt: 0) }.joined())
        var record: [String: Any] = ["bench": "load", "model": model, "precision": "\(precision)", "runs": runs,
                                     "date": ISO8601DateFormatter().string(from: Date())]
        for (name, timings) in modes {
            var row = name.padding(toLength: 14, withPad: " ", startingAt: 0)
            var fields: [String: Double] = [:]
            for (stage, path) in stages {
                let ms = median(timings.map { $0[keyPath: path] })
                fields[stage + "_ms"] = (ms * 100).rounded() / 100
                row += String(format: "%-13.1f", ms)
            }
            print(row)
            record[name.replacingOccurrences(of: " ", with: "_")] = fields
        }
        let line = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) + Data("\n".utf8)
        if let handle = FileHandle(forWritingAtPath: output) {
            handle.seekToEndOfFile()
            handle.write(line)
            try handle.close()
        } else {
            try line.write(to: URL(fileURLWithPath: output))
        }
    }
}
