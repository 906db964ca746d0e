import ArgumentParser
import Foundation
import M3Index
import M3Model

/// `m3bench colbert`: ColBERT MaxSim of one query against C candidates of T tokens (d = 1024),
/// the rescoring step of a hybrid search. `Benchmarks/colbert.py` runs it next to numpy.
///
/// Methods (one timed call = all C candidates scored):
/// - `maxsim_f16`: `Similarity.maxSim` on the float16 rows as stored (AVX-512 4×4 kernel,
///   converting halves in registers), one thread;
/// - `maxsim_f16_2t`: the same, candidates split over 2 threads (what the search path does);
/// - `maxsim_f32`: the kernel on float32 rows;
/// - `sgemm_f32`: `Scores.colbert` (OpenBLAS sgemm q·pᵀ per candidate, then row max) on float32 rows;
/// - `decode_sgemm_f16`: float16 → float32 copy per candidate, then `Scores.colbert` (the
///   search path before this benchmark).
struct ColBERTBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "colbert", abstract: "ColBERT MaxSim scoring of candidates: our kernels vs sgemm.")

    @Option(help: "Candidates per query.") var candidates = 100
    @Option(help: "Tokens (rows) per candidate.") var tokens = 256
    @Option(help: "Vector dimension.") var dimension = 1024
    @Option(help: "Query token counts, comma-separated.") var queryTokens = "32,16"
    @Option(help: "Timed repetitions per method per round.") var repeats = 40
    @Option(help: "Rounds (methods interleaved within each); medians are reported.") var rounds = 3
    @Option(help: "Seed.") var seed: UInt64 = 7
    @Option(help: "Data file for colbert.py (default Benchmarks/work/colbert.bin).") var data: String?
    @Option(help: "Write this run's record (JSON) to this file.") var json: String?
    @Flag(help: "Append the record to Benchmarks/results/colbert.jsonl.") var record = false

    func run() throws {
        let nqs = queryTokens.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let nqMax = nqs.max() ?? 32
        let d = dimension, rowsPerDoc = tokens
        var rng = SeededRNG(seed: seed)
        // Unit rows, as BGE-M3's ColBERT vectors are normalised.
        func unitRows(_ n: Int) -> [Float] {
            var v = (0..<n * d).map { _ in Float(rng.normal()) }
            for r in 0..<n {
                var s: Float = 0
                for i in 0..<d { s += v[r * d + i] * v[r * d + i] }
                let inv = 1 / s.squareRoot()
                for i in 0..<d { v[r * d + i] *= inv }
            }
            return v
        }
        let query = unitRows(nqMax)
        let half: [UInt16] = unitRows(candidates * rowsPerDoc).map { Float16($0).bitPattern }
        let f32 = half.map { Float(Float16(bitPattern: $0)) }  // the same values, widened
        let docBytes = rowsPerDoc * d

        var expected: [[Float]] = []
        for nq in nqs {
            let q = Array(query.prefix(nq * d))
            let viaKernel = scoreF16(q, half, docBytes, threads: 1)
            let viaSgemm = (0..<candidates).map { c in
                Scores.colbert(MultiVector(dimension: d, values: q),
                               MultiVector(dimension: d, values: Array(f32[c * docBytes ..< (c + 1) * docBytes])))
            }
            let worst = zip(viaKernel, viaSgemm).map { abs($0 - $1) }.max() ?? 0
            guard worst < 1e-4 else { throw ValidationError("kernel and sgemm disagree by \(worst)") }
            print("check nq=\(nq): max |kernel − sgemm| = \(worst)")
            expected.append(viaKernel)
        }
        let path = data ?? QueryBench.workDir + "/colbert.bin"
        try writeData(path: path, nqs: nqs, query: query, half: half, expected: expected)

        let methods = ["maxsim_f16", "maxsim_f16_2t", "maxsim_f32", "sgemm_f32", "decode_sgemm_f16"]
        var perRound: [String: [QueryBench.Stats]] = [:]
        var sink: Float = 0
        for round in 0..<rounds {
            for nq in nqs {
                let q = Array(query.prefix(nq * d))
                let qv = MultiVector(dimension: d, values: q)
                for m in methods {
                    var ns: [UInt64] = []
                    for _ in 0..<repeats {
                        let t = QueryBench.now()
                        var scores: [Float]
                        switch m {
                        case "maxsim_f16": scores = scoreF16(q, half, docBytes, threads: 1)
                        case "maxsim_f16_2t": scores = scoreF16(q, half, docBytes, threads: 2)
                        case "maxsim_f32":
                            scores = q.withUnsafeBufferPointer { qp in
                                f32.withUnsafeBufferPointer { fp in
                                    (0..<candidates).map { c in
                                        Similarity.maxSim(query: qp, dimension: d,
                                                          passage: UnsafeBufferPointer(rebasing: fp[c * docBytes ..< (c + 1) * docBytes]))
                                    }
                                }
                            }
                        case "sgemm_f32":
                            scores = (0..<candidates).map { c in
                                Scores.colbert(qv, MultiVector(dimension: d, values: Array(f32[c * docBytes ..< (c + 1) * docBytes])))
                            }
                        default:
                            scores = (0..<candidates).map { c in
                                let values = [Float](unsafeUninitializedCapacity: docBytes) { buf, n in
                                    for i in 0..<docBytes { buf[i] = Float(Float16(bitPattern: half[c * docBytes + i])) }
                                    n = docBytes
                                }
                                return Scores.colbert(qv, MultiVector(dimension: d, values: values))
                            }
                        }
                        ns.append(QueryBench.now() - t)
                        sink += scores[0]
                    }
                    perRound["\(m)/q\(nq)", default: []].append(QueryBench.Stats(nanoseconds: ns))
                }
            }
            print("round \(round + 1) done")
        }
        // sgemm_f32 copies each candidate into a MultiVector (an Array) first, as Scores.colbert
        // takes one; that copy is ~0.5 MB per candidate and is part of the number.
        let med = perRound.mapValues(QueryBench.Stats.median)
        print("\n\(candidates) candidates × \(tokens) tokens × \(d), median of \(rounds) rounds × \(repeats) calls (ms per query):")
        print("| method | q tokens | p50 | p95 | mean | GFLOP/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for nq in nqs {
            let flops = 2.0 * Double(nq * candidates * tokens * d)
            for m in methods {
                let s = med["\(m)/q\(nq)"]!
                print("| \(m) | \(nq) | \(QueryBench.fmt(s.p50)) | \(QueryBench.fmt(s.p95)) | \(QueryBench.fmt(s.mean)) | \(QueryBench.fmt(flops / s.p50 / 1e6, 1)) |")
            }
        }
        if sink.isNaN { print("") }
        var rec = QueryBench.environment()
        rec["benchmark"] = "colbert"
        rec["isa"] = Similarity.instructionSet
        rec["parameters"] = ["candidates": candidates, "tokens": tokens, "dimension": d, "query_tokens": nqs,
                             "repeats": repeats, "rounds": rounds, "seed": seed] as [String: Any]
        rec["median_ms"] = med.mapValues { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] }
        rec["rounds_ms"] = perRound.mapValues { $0.map { ["p50": $0.p50, "p95": $0.p95, "mean": $0.mean] } }
        rec["data_file"] = path
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/colbert.jsonl" : nil, jsonOut: json)
    }

    /// MaxSim of q against each candidate's float16 rows, over `threads` threads.
    func scoreF16(_ q: [Float], _ half: [UInt16], _ docValues: Int, threads: Int) -> [Float] {
        var out = [Float](repeating: 0, count: candidates)
        let d = dimension, n = candidates
        q.withUnsafeBufferPointer { qp in
            half.withUnsafeBufferPointer { hp in
                out.withUnsafeMutableBufferPointer { op in
                    let o = op.baseAddress!
                    let body = { (t: Int) in
                        for c in stride(from: t, to: n, by: threads) {
                            o[c] = Similarity.maxSim(query: qp, dimension: d,
                                                     float16Bits: UnsafeBufferPointer(rebasing: hp[c * docValues ..< (c + 1) * docValues]))
                        }
                    }
                    if threads == 1 { body(0) } else { parallelIterations(threads, body) }
                }
            }
        }
        return out
    }

    /// "M3COLBRT" u32 version(1) candidates tokens dimension nqMax nqCount, u32 nq[nqCount],
    /// f32 query (nqMax, d), u16 passages (candidates, tokens, d) binary16,
    /// f32 expected[nqCount][candidates] (our f16 kernel's scores; query = first nq rows).
    func writeData(path: String, nqs: [Int], query: [Float], half: [UInt16], expected: [[Float]]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var out = Data(Array("M3COLBRT".utf8))
        func put(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for v in [1, candidates, tokens, dimension, nqs.max() ?? 0, nqs.count] + nqs { put(UInt32(v)) }
        query.withUnsafeBytes { out.append(contentsOf: $0) }
        half.withUnsafeBytes { out.append(contentsOf: $0) }
        for e in expected { e.withUnsafeBytes { out.append(contentsOf: $0) } }
        try out.write(to: URL(fileURLWithPath: path))
    }
}
