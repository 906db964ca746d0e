import ArgumentParser
import Foundation
import M3Model

/// `m3bench short-queries`: latency and queries/s of `BGEM3.encode` (all three heads) on
/// batches of distinct short queries, against encoding the same queries one by one.
/// `--serve` answers timing requests on stdin for Benchmarks/short_queries.py, which
/// interleaves them with onnxruntime in the same run.
struct ShortQueryBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "short-queries",
        abstract: "Short-query encode latency by batch size (or --serve for Benchmarks/short_queries.py).")

    @Option(help: "Model folder.") var model: String = "Fixtures/generated/bge-m3-full-random"
    @Option(help: "f32, bf16 or int8.") var precision: String = "f32"
    @Option(help: "Tokens per query (with <s> and </s>).") var length: Int = 16
    @Option(help: "Batch sizes, comma-separated.") var batches: String = "1,2,4,8,16,32"
    @Option(help: "Timed repetitions per batch size (fresh queries each time).") var repeats: Int = 5
    @Option(help: "Forward path: auto, short (dot-product kernels) or long (sgemm, the path before the short one).")
    var path: String = "auto"
    @Flag(help: "Read JSON lines {\"ids\": [[token ids]]} on stdin; answer {\"seconds\": …} per line (with \"check\": true, whether each query's outputs are bit-identical alone and in the batch).") var serve = false

    func run() throws {
        guard let requested = Precision(precision) else { throw ValidationError("unknown precision \(precision)") }
        guard ["auto", "short", "long"].contains(path) else { throw ValidationError("--path is auto, short or long") }
        let m3 = try BGEM3(folder: model, precision: requested)
        if let why = m3.precisionFallback { FileHandle.standardError.write(Data("running float32: \(why)\n".utf8)) }
        if serve { return try answer(m3) }

        let sizes = batches.split(separator: ",").compactMap { Int($0) }
        var rng = SeededRNG(seed: 7)
        func queries(_ n: Int) -> [[Int32]] {
            (0..<n).map { _ in [0] + (0..<(length - 2)).map { _ in Int32(4 + rng.next() % 249_990) } + [2] }
        }
        _ = try encode(m3, queries(2))  // warm-up: page in the weights
        print("precision \(m3.precision), path \(path), \(length)-token queries, median of \(repeats)")
        print("batch   latency ms   queries/s   one by one ms   speed-up")
        var single = 0.0
        for b in sizes {
            var times: [Double] = []
            for _ in 0..<repeats { times.append(try encode(m3, queries(b))) }
            let median = times.sorted()[times.count / 2]
            if b == 1 { single = median }
            let oneByOne = single * Double(b)
            print(String(format: "%5d %12.1f %11.1f %15.1f %9.2f×", b, median * 1e3, Double(b) / median, oneByOne * 1e3,
                         single > 0 ? oneByOne / median : 0))
        }
        if let largest = sizes.max() {
            let differ = try batchDifferences(m3, queries(largest))
            print("batch invariance: \(largest - differ.count) of \(largest) queries bit-identical alone and in the batch")
        }
    }

    /// Indices of the queries whose outputs (dense, sparse, ColBERT) are not bit for bit the
    /// same encoded alone as in `sequences` together: the promise dynamic batching relies on.
    private func batchDifferences(_ m3: BGEM3, _ sequences: [[Int32]]) throws -> [Int] {
        let together = try m3.encode(tokenIDs: sequences)
        return try sequences.indices.filter { i in
            let alone = try m3.encode(tokenIDs: [sequences[i]])[0]
            return !sameBits(alone, together[i])
        }
    }

    /// Wall seconds of one encode call on `sequences` (valid ids, so the path is the only choice).
    private func encode(_ m3: BGEM3, _ sequences: [[Int32]]) throws -> Double {
        let t = DispatchTime.now().uptimeNanoseconds
        switch path {
        case "short": _ = m3.encode(tokenIDs: sequences, shortPath: true)
        case "long": _ = m3.encode(tokenIDs: sequences, shortPath: false)
        default: _ = try m3.encode(tokenIDs: sequences)
        }
        return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
    }

    private func answer(_ m3: BGEM3) throws {
        struct Request: Decodable { let ids: [[Int32]]; var check: Bool? }
        // Unbuffered writes: the driver waits for each line.
        func reply(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        reply("{\"ready\": true, \"precision\": \"\(m3.precision)\"}")
        while let line = readLine() {
            guard !line.isEmpty else { continue }
            let request = try JSONDecoder().decode(Request.self, from: Data(line.utf8))
            if request.check == true {
                let differ = try batchDifferences(m3, request.ids)
                reply("{\"checked\": \(request.ids.count), \"differ\": \(differ)}")
                continue
            }
            let cpu0 = cpuSeconds()
            let seconds = try encode(m3, request.ids)
            reply("{\"seconds\": \(seconds), \"cpu_seconds\": \(cpuSeconds() - cpu0)}")
        }
    }
}

/// Equal bit patterns throughout (Float's == would take -0 for +0).
private func sameBits(_ a: Embedding, _ b: Embedding) -> Bool {
    func bits(_ v: [Float]?) -> [UInt32]? { v?.map(\.bitPattern) }
    return a.tokenIDs == b.tokenIDs && bits(a.dense) == bits(b.dense)
        && a.sparse?.ids == b.sparse?.ids && bits(a.sparse?.weights) == bits(b.sparse?.weights)
        && a.colbert?.dimension == b.colbert?.dimension && bits(a.colbert?.values) == bits(b.colbert?.values)
}

/// User + system CPU seconds of this process so far (all threads).
private func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
