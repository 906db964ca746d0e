// m3bench hnsw: build time, memory and recall@10 / QPS of M3Index's HNSWIndex on raw vector
// files (written by Benchmarks/hnsw_data.py; Benchmarks/hnsw.py runs this next to hnswlib
// and faiss). m3bench hnsw-writes: what the writer's commits cost, one insert at a time
// against insertBatch.
import ArgumentParser
import CM3Kernels
import Foundation
import M3Index

struct HNSWBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hnsw",
        abstract: "Build an in-memory HNSWIndex and print build time and memory, then recall@k and QPS per efSearch.",
        discussion: """
            Files are little-endian and row-major: base and queries float32 (rows × dim, unit \
            norm), truth int32 (queries × k: base row numbers of each query's exact top k). \
            Ids are base row numbers. The base file is memory-mapped (a 1M × 1024 set is 4 GB), \
            so the graph's own memory shows as the process's anonymous resident memory. Queries \
            run on one thread, one query per call, like server requests. With --encoding int8 \
            the candidates are rescored exactly from the mapped base vectors (the store's role \
            in the product) unless --no-rescore.
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
    @Option(help: "How the graph holds vectors: float32 or int8.") var encoding = "float32"
    @Option(help: "Use only the first N base vectors (0: all).") var limit = 0
    @Flag(help: "int8: return the graph's approximate top k, no exact rescoring.") var noRescore = false
    @Flag(help: "Only build (for build timings at other thread counts).") var noSearch = false
    @Flag(help: "Also print one JSON line with every figure (for Benchmarks/hnsw.py).") var json = false

    func run() throws {
        let enc: HNSWIndex.VectorEncoding
        switch encoding {
        case "float32", "f32": enc = .float32
        case "int8": enc = .int8
        default: throw ValidationError("--encoding is float32 or int8, not '\(encoding)'")
        }
        let baseFile = try MappedFloats(path: base)
        let queryV = try readArray(queries, as: Float.self)
        let truthV = try readArray(truth, as: Int32.self)
        guard baseFile.count % dim == 0, queryV.count % dim == 0 else {
            throw ValidationError("file sizes are not multiples of dim \(dim) floats")
        }
        var n = baseFile.count / dim
        if limit > 0 { n = Swift.min(n, limit) }
        let nq = queryV.count / dim
        guard truthV.count == nq * k else { throw ValidationError("truth has \(truthV.count) ints, expected \(nq) × \(k)") }
        let efs = try efSearch.split(separator: ",").map { s -> Int in
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v >= 1 else {
                throw ValidationError("bad efSearch value '\(s)'")
            }
            return v
        }
        let rescore = enc == .int8 && !noRescore
        let b = baseFile.pointer

        // Build.
        let anonBefore = residentKB("RssAnon")
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: m, efConstruction: efConstruction, encoding: enc))
        let t0 = now()
        if threads <= 1 {
            for i in 0..<n {
                try index.insert(id: Int64(i), vector: UnsafeBufferPointer(start: b + i * dim, count: dim))
            }
        } else {
            try index.insertBatch(ids: (0..<Int64(n)).map { $0 }, vectors: UnsafeBufferPointer(start: b, count: n * dim),
                                  threads: threads)
        }
        let buildS = now() - t0
        let graphKB = residentKB("RssAnon") - anonBefore
        print(String(format: "build: n %d, dim %d, M %d, efConstruction %d, threads %d, %@: %.2f s (%.0f inserts/s)",
                     n, dim, m, efConstruction, threads, enc.description, buildS, Double(n) / buildS))
        print(String(format: "memory: graph %.1f MB counted (%.0f B/vector), anonymous resident growth %.1f MB, peak RSS %.1f MB",
                     Double(index.memoryBytes) / 1e6, Double(index.memoryBytes) / Double(n),
                     Double(graphKB) / 1e3, Double(residentKB("VmHWM")) / 1e3))

        // Search: one query per call on this thread. Truth rows beyond `limit` cannot be found.
        var curve: [[String: Any]] = []
        print("| efSearch | recall@\(k) | QPS | µs/query |")
        print("|---:|---:|---:|---:|")
        if !noSearch { try queryV.withUnsafeBufferPointer { qb in
            func pass(ef: Int) throws -> (seconds: Double, found: Int) {
                var found = 0
                let t = now()
                for i in 0..<nq {
                    let q = UnsafeBufferPointer(rebasing: qb[i * dim ..< (i + 1) * dim])
                    let hits = try index.search(q, k: k, ef: ef, exactScore: rescore ? { id in
                        m3ix_dot_f32(q.baseAddress!, b + Int(id) * dim, dim)
                    } : nil)
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
            let record: [String: Any] = ["engine": enc == .int8 ? (rescore ? "m3search-int8" : "m3search-int8-norescore") : "m3search",
                                         "n": n, "nq": nq, "dim": dim, "m": m,
                                         "ef_construction": efConstruction, "threads": threads, "encoding": enc.description,
                                         "rescore": rescore, "build_s": buildS, "curve": curve, "isa": Similarity.instructionSet,
                                         "int8_isa": Int(m3ix_i8_isa_level()), "graph_bytes": index.memoryBytes,
                                         "graph_rss_kb": graphKB, "peak_rss_kb": residentKB("VmHWM")]
            let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
            print("JSON " + String(decoding: data, as: UTF8.self))
        }
    }
}

/// m3bench hnsw-writes: the writer's commits, as `SearchIndex` makes them (a batch of new
/// chunks into a graph that already holds many), one `insert` at a time against one
/// `insertBatch` per commit. Reports time per inserted vector and the slots each commit
/// dirties (the records the store must rewrite), alternating the two methods commit by commit.
struct HNSWWritesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hnsw-writes",
        abstract: "Time commit-sized insert batches: serial inserts against insertBatch, with dirty slots per commit.")

    @Option(help: "Base vectors (n × dim float32).") var base: String
    @Option(help: "Vector length.") var dim = 1024
    @Option(help: "Vectors in the graph before the commits.") var initial = 50_000
    @Option(help: "Vectors per commit, comma-separated.") var batches = "16,64,256,1024"
    @Option(help: "Commits per batch size and method.") var commits = 4
    @Option(help: "Threads for insertBatch.") var threads = 2
    @Option(help: "How the graph holds vectors: float32 or int8.") var encoding = "int8"
    @Flag(help: "Also print one JSON line.") var json = false

    func run() throws {
        let enc: HNSWIndex.VectorEncoding = encoding == "int8" ? .int8 : .float32
        let file = try MappedFloats(path: base)
        let sizes = batches.split(separator: ",").compactMap { Int($0) }
        let needed = initial + sizes.reduce(0, +) * commits * 2
        guard file.count / dim >= needed else { throw ValidationError("need \(needed) base vectors, the file has \(file.count / dim)") }
        let b = file.pointer
        let index = try HNSWIndex(parameters: .init(dimension: dim, encoding: enc))
        let t0 = now()
        try index.insertBatch(ids: (0..<Int64(initial)).map { $0 }, vectors: UnsafeBufferPointer(start: b, count: initial * dim),
                              threads: threads)
        index.clearDirty()
        print(String(format: "initial graph: %d vectors in %.1f s (%@)", initial, now() - t0, enc.description))
        var next = initial
        var rows: [[String: Any]] = []
        print("| vectors per commit | serial µs/vector | insertBatch µs/vector | speed-up | dirty slots/vector serial | batch |")
        print("|---:|---:|---:|---:|---:|---:|")
        for size in sizes {
            var serial = (seconds: 0.0, dirty: 0), batch = (seconds: 0.0, dirty: 0)
            for _ in 0..<commits {
                for method in 0..<2 {
                    let ids = (next..<next + size).map(Int64.init)
                    let v = UnsafeBufferPointer(start: b + next * dim, count: size * dim)
                    next += size
                    let t = now()
                    if method == 0 {
                        for (i, id) in ids.enumerated() {
                            try index.insert(id: id, vector: UnsafeBufferPointer(rebasing: v[i * dim ..< (i + 1) * dim]))
                        }
                    } else {
                        try index.insertBatch(ids: ids, vectors: v, threads: threads)
                    }
                    let dt = now() - t
                    // What the writer then does: serialise every dirty record.
                    let dirty = index.dirtySlots
                    var bytes = 0
                    for s in dirty { bytes += index.nodeRecord(slot: s).bytes.count }
                    _ = bytes
                    index.clearDirty()
                    if method == 0 { serial.seconds += dt; serial.dirty += dirty.count } else { batch.seconds += dt; batch.dirty += dirty.count }
                }
            }
            let count = Double(size * commits)
            let su = serial.seconds / count * 1e6, bu = batch.seconds / count * 1e6
            print(String(format: "| %d | %.0f | %.0f | %.2f× | %.2f | %.2f |", size, su, bu, su / bu,
                         Double(serial.dirty) / count, Double(batch.dirty) / count))
            rows.append(["batch": size, "serial_us_per_vector": su, "batch_us_per_vector": bu,
                         "serial_dirty_per_vector": Double(serial.dirty) / count, "batch_dirty_per_vector": Double(batch.dirty) / count])
        }
        try index.checkIntegrity()
        if json {
            let record: [String: Any] = ["benchmark": "hnsw-writes", "initial": initial, "threads": threads, "commits": commits,
                                         "encoding": enc.description, "rows": rows]
            let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
            print("JSON " + String(decoding: data, as: UTF8.self))
        }
    }
}

/// A read-only memory map of a float32 file (pages come from the page cache, not the heap).
final class MappedFloats {
    let pointer: UnsafePointer<Float>
    let count: Int
    private let bytes: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0, st.st_size % 4 == 0 else {
            throw ValidationError("\(path) is empty or not whole float32 values")
        }
        bytes = Int(st.st_size)
        guard let p = mmap(nil, bytes, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ValidationError("cannot map \(path)")
        }
        pointer = UnsafePointer(p.assumingMemoryBound(to: Float.self))
        count = bytes / 4
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: pointer), bytes) }
}

/// A field of /proc/self/status in kB (RssAnon: heap and other private memory; VmHWM: peak RSS).
func residentKB(_ field: String) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return Int(line.split(separator: " ").dropFirst().first { !$0.isEmpty }.map(String.init)?
            .trimmingCharacters(in: .whitespaces) ?? "") ?? 0
    }
    return 0
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func readArray<T>(_ path: String, as: T.Type) throws -> [T] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("cannot read \(path)")
    }
    guard data.count % MemoryLayout<T>.stride == 0 else {
        throw ValidationError("\(path): \(data.count) bytes is not a whole number of \(T.self)")
    }
    return data.withUnsafeBytes { raw in Array(raw.bindMemory(to: T.self)) }
}
