import ArgumentParser
import Foundation
import M3Model

/// `m3bench encoder`: encoder throughput on synthetic token ids, with the per-stage profile
/// and the process's resident memory (weights are mmapped, so RSS counts the pages touched).
struct EncoderBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encoder", abstract: "Encoder throughput, stage profile and peak RSS.")

    @Option(help: "Model folder.") var model: String = "Fixtures/generated/bge-m3-full-random"
    @Option(help: "f32, bf16 or int8.") var precision: String = "f32"
    @Option(help: "Tokens per sequence (with <s> and </s>).") var length: Int = 512
    @Option(help: "Sequences per batch.") var count: Int = 1
    @Option(help: "Timed repetitions (after one warm-up unless --no-warmup).") var repeats: Int = 3
    @Flag(help: "Skip the warm-up run (for a cold peak-RSS measurement).") var noWarmup = false
    @Flag(help: "Run the full encode with all three heads instead of the encoder profile.") var heads = false

    func run() throws {
        let t0 = Date()
        guard let requested = Precision(precision) else { throw ValidationError("unknown precision \(precision)") }
        let m3 = try BGEM3(folder: model, precision: requested)
        if let why = m3.precisionFallback { print("running float32: \(why)") }
        let load = Date().timeIntervalSince(t0)
        let rssLoaded = residentBytes()
        // Ids from the ordinary vocabulary (4 ..< 250000), seeded, so runs are comparable.
        var rng = SeededRNG(seed: 42)
        let sequences: [[Int32]] = (0..<count).map { _ in
            [0] + (0..<(length - 2)).map { _ in Int32(4 + rng.next() % 249_990) } + [2]
        }
        if !noWarmup { _ = try once(m3, sequences) }
        var times: [Double] = []
        var stages: [String: [Double]] = [:], order: [String] = []
        for _ in 0..<repeats {
            let (wall, profile) = try once(m3, sequences)
            times.append(wall)
            for (s, v) in profile {
                if stages[s] == nil { order.append(s) }
                stages[s, default: []].append(v)
            }
        }
        let median = times.sorted()[times.count / 2]
        let tokens = length * count
        print(String(format: "load %.2f s, RSS after load %.0f MB", load, Double(rssLoaded) / 1e6))
        print(String(format: "%d × %d tokens: median %.3f s, %.1f tok/s (runs: %@)", count, length, median,
                     Double(tokens) / median, times.map { String(format: "%.3f", $0) }.joined(separator: " ")))
        for s in order {
            let v = stages[s]!.sorted()[stages[s]!.count / 2]
            print("  " + s.padding(toLength: 26, withPad: " ", startingAt: 0)
                  + String(format: "%8.3f s  %5.1f%%", v, 100 * v / median))
        }
        print(String(format: "peak RSS %.0f MB", Double(peakResidentBytes()) / 1e6))
    }

    private func once(_ m3: BGEM3, _ sequences: [[Int32]]) throws -> (Double, [(stage: String, seconds: Double)]) {
        let t = Date()
        if heads {
            _ = try m3.encode(tokenIDs: sequences)
            return (Date().timeIntervalSince(t), [])
        }
        let profile = m3.profileForward(sequences)
        return (Date().timeIntervalSince(t), profile)
    }
}

/// VmRSS and VmHWM from /proc/self/status, in bytes.
func residentBytes() -> Int { procStatus("VmRSS:") }
func peakResidentBytes() -> Int { procStatus("VmHWM:") }
private func procStatus(_ key: String) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return kb * 1024
    }
    return 0
}
