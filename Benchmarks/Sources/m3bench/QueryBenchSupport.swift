// Shared pieces of the query benchmarks (sparse, colbert, end-to-end): a seeded RNG, the
// BGE-M3-like sparse generator, latency statistics and the JSON record they append.
import Foundation
import M3Index

enum QueryBench {
    /// Repository root: the current directory when it holds Package.swift, else found from
    /// this source file's location (m3bench runs from the root in every documented command).
    static var root: String {
        let cwd = FileManager.default.currentDirectoryPath
        if FileManager.default.fileExists(atPath: cwd + "/Package.swift") { return cwd }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }
    static var workDir: String { root + "/Benchmarks/work" }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    // MARK: Statistics

    /// Latency summary of one method over one round, in milliseconds.
    struct Stats: Codable {
        var p50: Double
        var p95: Double
        var mean: Double

        init(nanoseconds: [UInt64]) {
            let ms = nanoseconds.map { Double($0) / 1e6 }.sorted()
            p50 = Self.percentile(ms, 0.50)
            p95 = Self.percentile(ms, 0.95)
            mean = ms.reduce(0, +) / Double(max(ms.count, 1))
        }

        init(p50: Double, p95: Double, mean: Double) { self.p50 = p50; self.p95 = p95; self.mean = mean }

        /// Linear interpolation between closest ranks (numpy's default).
        static func percentile(_ sorted: [Double], _ q: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let x = q * Double(sorted.count - 1)
            let lo = Int(x.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - Double(lo))
        }

        /// Field-wise median over rounds.
        static func median(_ rounds: [Stats]) -> Stats {
            func med(_ v: [Double]) -> Double {
                let s = v.sorted()
                return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
            }
            return Stats(p50: med(rounds.map(\.p50)), p95: med(rounds.map(\.p95)), mean: med(rounds.map(\.mean)))
        }
    }

    static func fmt(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

    // MARK: Records

    /// Machine and build facts every record carries.
    static func environment() -> [String: Any] {
        var cpu = "unknown"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) {
            cpu = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? cpu
        }
        let commit = (try? shell("git", "-C", root, "rev-parse", "--short", "HEAD")) ?? "unknown"
        let dirty = ((try? shell("git", "-C", root, "status", "--porcelain", "--untracked-files=no")) ?? "").isEmpty ? "" : "+dirty"
        return ["date": ISO8601DateFormatter().string(from: Date()), "cpu": cpu,
                "cores": ProcessInfo.processInfo.activeProcessorCount, "commit": commit + dirty,
                "openblas_threads": ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "default"]
    }

    static func shell(_ args: String...) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Appends one JSON line to `path` (creating folders) and/or writes it alone to `jsonOut`.
    static func write(record: [String: Any], appendTo path: String?, jsonOut: String?) throws {
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        if let jsonOut { try data.write(to: URL(fileURLWithPath: jsonOut)) }
        guard let path else { return }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: data + Data("\n".utf8))
        try h.close()
    }
}

/// SplitMix64 (M3Index's, the one the HNSW levels use): seeded, the same sequence everywhere.
typealias SeededRNG = SplitMix64

extension SplitMix64 {
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    /// Standard normal (Box–Muller).
    mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// Synthetic sparse vectors shaped like BGE-M3's lexical weights.
///
/// - Token ids: Zipf(s) over the vocabulary by frequency rank (rank r drawn with
///   probability ∝ 1/(r+1)^s), mapped to ids through a seeded permutation so that frequent
///   tokens are spread over the id range. Each chunk has `termsPerDoc` distinct tokens
///   (a chunk's sparse vector keeps one weight per distinct token).
/// - Weights: BGE-M3 gives frequent tokens (punctuation, stop words) small weights and rare,
///   content-bearing ones larger weights, spread around that trend. Model:
///   w = 0.3 · (0.15 + 0.85 · ln(1+r)/ln(V)) · exp(0.4·N(0,1)), clamped to [0.005, 0.95].
///   The median weight is ~0.2; stop-word-rank tokens sit near 0.05 (what BGE-M3 outputs
///   for "the"/"," when it keeps them).
/// - Queries: `queryTerms` distinct tokens: 60 % taken from one random chunk (so each
///   query has real matches, as a query about a passage does) and the rest drawn from the
///   same Zipf law among tokens that have a posting list; weights from the same law.
struct SparseGenerator {
    let vocabulary: Int
    let exponent: Double
    private let cdf: [Double]          // cdf[r] = P(rank ≤ r)
    private let idOfRank: [Int32]      // seeded permutation of 0..<vocabulary
    private let rankOfID: [Int32]      // its inverse

    init(vocabulary: Int = 250_000, exponent: Double = 1.0, seed: UInt64) {
        self.vocabulary = vocabulary
        self.exponent = exponent
        var c = [Double](repeating: 0, count: vocabulary)
        var total = 0.0
        for r in 0..<vocabulary { total += pow(Double(r + 1), -exponent); c[r] = total }
        for r in 0..<vocabulary { c[r] /= total }
        cdf = c
        var rng = SeededRNG(seed: seed ^ 0x70E4)
        var perm = (0..<Int32(vocabulary)).map { $0 }
        perm.shuffle(using: &rng)
        idOfRank = perm
        var inverse = [Int32](repeating: 0, count: vocabulary)
        for (r, id) in perm.enumerated() { inverse[Int(id)] = Int32(r) }
        rankOfID = inverse
    }

    func drawRank(_ rng: inout SeededRNG) -> Int {
        let u = rng.unit()
        var a = 0, b = vocabulary - 1
        while a < b {
            let m = (a + b) / 2
            if cdf[m] < u { a = m + 1 } else { b = m }
        }
        return a
    }

    func weight(rank: Int, _ rng: inout SeededRNG) -> Float {
        let trend = 0.15 + 0.85 * log(1 + Double(rank)) / log(Double(vocabulary))
        let w = 0.3 * trend * exp(0.4 * rng.normal())
        return Float(min(max(w, 0.005), 0.95))
    }

    /// One chunk: `terms` distinct (id, weight), ids ascending.
    func document(terms: Int, _ rng: inout SeededRNG) -> (ids: [Int32], weights: [Float]) {
        var ranks = Set<Int>()
        while ranks.count < terms { ranks.insert(drawRank(&rng)) }
        var pairs = ranks.sorted().map { (idOfRank[$0], weight(rank: $0, &rng)) }
        pairs.sort { $0.0 < $1.0 }
        return (pairs.map(\.0), pairs.map(\.1))
    }

    /// One query of `terms` distinct tokens; `from` is a chunk's ids, `hasPostings` says
    /// which ids occur in the corpus.
    func query(terms: Int, from doc: [Int32], hasPostings: (Int32) -> Bool, _ rng: inout SeededRNG) -> (ids: [Int32], weights: [Float]) {
        var chosen = Set<Int32>()
        let fromDoc = min(doc.count, Int((Double(terms) * 0.6).rounded()))
        var pool = doc
        pool.shuffle(using: &rng)
        for id in pool.prefix(fromDoc) { chosen.insert(id) }
        while chosen.count < terms {
            let r = drawRank(&rng)
            let id = idOfRank[r]
            if hasPostings(id) { chosen.insert(id) }
        }
        let ids = chosen.sorted()
        let weights = ids.map { weight(rank: Int(rankOfID[Int($0)]), &rng) }
        return (ids, weights)
    }

}


/// Runs body(0..<n) on n threads and waits. The body may capture pointers: the caller
/// guarantees the iterations touch disjoint memory.
func parallelIterations(_ n: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let run = escaping
        DispatchQueue.concurrentPerform(iterations: n) { run($0) }
    }
}
