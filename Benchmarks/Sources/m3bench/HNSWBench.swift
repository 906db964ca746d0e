// m3bench hnsw: build time and recall@10 / QPS of M3Index's HNSWIndex on raw vector files
// (written by Benchmarks/hnsw_data.py; Benchmarks/hnsw.py runs this next to hnswlib and faiss).
import ArgumentParser
import Foundation
import M3Index

struct HNSWBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hnsw",
        abstract: "Build an in-memory HNSWIndex and print build time, then recall@k and QPS per efSearch.",
        discussion: """
            Files are little-endian and row-major: base and queries float32 (rows × dim, unit \
            norm), truth int32 (queries × k: base row numbers of each query's exact top k). \
            Ids are base row numbers. Queries run on one thread, one query per call, like \
            server requests.
            """)

    @Option(help: "Base vectors (n × dim float32).") var base: String
    @Option(help: "Query vectors (nq × dim float32).") var queries: String
    @Option(help: "Exact top-k of each query (nq × k int32).") var truth: String
    @Option(help: "Vector length.") var dim = 1024
    @Option(help: "Results per query (and columns of the truth file).") var k = 10
    @Option(help: "HNSW M (links per node; 2·M on layer 0).") var m = 16
    @Option(help: "efConstruction.") var efConstruction = 200
    @Option(help: "efSearch values, comma-separated.") var efSearch = "10,16,32,64,128,256,512"
    @Option(help: "Build threads (1: one insert at a time; more: HNSWIndex.insertBatch).") var threads = 1
    @Option(help: "Timed passes over the queries per efSearch (the fastest is reported).") var repeats = 1
    @Flag(help: "Only build (for build timings at other thread counts).") var noSearch = false
    @Flag(help: "Also print one JSON line with every figure (for Benchmarks/hnsw.py).") var json = false

    func run() throws {
        let baseV = try readArray(base, as: Float.self)
        let queryV = try readArray(queries, as: Float.self)
        let truthV = try readArray(truth, as: Int32.self)
        guard baseV.count % dim == 0, queryV.count % dim == 0 else {
            throw ValidationError("file sizes are not multiples of dim \(dim) floats")
        }
        let n = baseV.count / dim, nq = queryV.count / dim
        guard truthV.count == nq * k else { throw ValidationError("truth has \(truthV.count) ints, expected \(nq) × \(k)") }
        let efs = try efSearch.split(separator: ",").map { s -> Int in
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v >= 1 else {
                throw ValidationError("bad efSearch value '\(s)'")
            }
            return v
        }

        // Build.
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: m, efConstruction: efConstruction))
        let t0 = now()
        try baseV.withUnsafeBufferPointer { b in
            if threads <= 1 {
                for i in 0..<n {
                    try index.insert(id: Int64(i), vector: UnsafeBufferPointer(rebasing: b[i * dim ..< (i + 1) * dim]))
                }
            } else {
                try index.insertBatch(ids: (0..<Int64(n)).map { $0 }, vectors: b, threads: threads)
            }
        }
        let buildS = now() - t0
        print(String(format: "build: n %d, dim %d, M %d, efConstruction %d, threads %d: %.2f s (%.0f inserts/s)",
                     n, dim, m, efConstruction, threads, buildS, Double(n) / buildS))

        // Search: one query per call on this thread.
        var curve: [[String: Any]] = []
        print("| efSearch | recall@\(k) | QPS | µs/query |")
        print("|---:|---:|---:|---:|")
        if !noSearch { try queryV.withUnsafeBufferPointer { qb in
            func pass(ef: Int) throws -> (seconds: Double, found: Int) {
                var found = 0
                let t = now()
                for i in 0..<nq {
                    let hits = try index.search(UnsafeBufferPointer(rebasing: qb[i * dim ..< (i + 1) * dim]), k: k, ef: ef)
                    let expected = truthV[i * k ..< (i + 1) * k]
                    for h in hits where expected.contains(Int32(h.id)) { found += 1 }
                }
                return (now() - t, found)
            }
            _ = try pass(ef: efs[0])  // warm-up: page in the graph and vectors
            for ef in efs {
                var best = Double.infinity, found = 0
                for _ in 0..<Swift.max(1, repeats) {
                    let r = try pass(ef: ef)
                    best = Swift.min(best, r.seconds)
                    found = r.found
                }
                let recall = Double(found) / Double(nq * k)
                print(String(format: "| %d | %.4f | %.0f | %.1f |", ef, recall, Double(nq) / best, best / Double(nq) * 1e6))
                curve.append(["ef": ef, "recall": recall, "qps": Double(nq) / best, "seconds": best])
            }
        } }
        if json {
            let record: [String: Any] = ["engine": "m3search", "n": n, "nq": nq, "dim": dim, "m": m,
                                         "ef_construction": efConstruction, "threads": threads,
                                         "build_s": buildS, "curve": curve, "isa": Similarity.instructionSet]
            let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
            print("JSON " + String(decoding: data, as: UTF8.self))
        }
    }

    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    private func readArray<T>(_ path: String, as: T.Type) throws -> [T] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path)")
        }
        guard data.count % MemoryLayout<T>.stride == 0 else {
            throw ValidationError("\(path): \(data.count) bytes is not a whole number of \(T.self)")
        }
        return data.withUnsafeBytes { raw in Array(raw.bindMemory(to: T.self)) }
    }
}
