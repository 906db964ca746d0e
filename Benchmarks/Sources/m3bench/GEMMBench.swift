import ArgumentParser
import COpenBLAS
import Foundation
import M3Model

/// `m3bench gemm`: the encoder's linear-layer shapes, y (M, N) = x (M, K)·Wᵀ + b, in
/// OpenBLAS sgemm, our int8 (VNNI) and bf16 kernels and, when built, oneDNN 2.6's matmul
/// (Benchmarks/onednn/gemm_onednn.c, a separate program), and the int16 kernel of int8
/// mode's feed-forward up-projection (vpdpwssd). Rounds are interleaved; each
/// engine's figure is the median over rounds of its median over repeats.
///
///   cc -O2 Benchmarks/onednn/gemm_onednn.c -ldnnl -o Benchmarks/work/gemm_onednn
///   flock /tmp/m3-bench.lock .build/release/m3bench gemm
struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm", abstract: "int8 / bf16 linear-layer kernels vs sgemm and oneDNN (GOP/s).")

    @Option(help: "Rounds (engines interleaved within each).") var rounds: Int = 3
    @Option(help: "Timed repetitions per engine and shape in a round.") var repeats: Int = 5
    @Option(help: "Rows M (tokens), comma-separated.") var rows: String = "512,4096"
    @Option(help: "oneDNN program (skipped when absent).") var onednn: String = "Benchmarks/work/gemm_onednn"
    @Option(help: "JSON Lines file the record is appended to.") var output: String = "Benchmarks/results/gemm.jsonl"

    /// (N, K): q/k/v/o and the ColBERT head, FFN up, FFN down.
    static let layers = [(1024, 1024), (4096, 1024), (1024, 4096)]

    func run() throws {
        let ms = rows.split(separator: ",").compactMap { Int($0) }
        let useOneDNN = FileManager.default.isExecutableFile(atPath: onednn)
        var engines = ["sgemm", "int8", "bf16", "int16"]
        if useOneDNN { engines += ["onednn int8 (u8s8s32)", "onednn bf16"] }
        struct Shape: Hashable { let m, n, k: Int }
        let shapes = ms.flatMap { m in Self.layers.map { Shape(m: m, n: $0.0, k: $0.1) } }
        var seconds: [Shape: [String: [Double]]] = [:]

        var rng = SeededRNG(seed: 7)
        func uniform(_ count: Int, _ scale: Float, offset: Float = 0) -> [Float] {
            (0..<count).map { _ in offset + scale * (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) }
        }
        // Prepared once per shape: packing is load-time work, not timed.
        struct Prepared { let x, w, b: [Float]; let i8, bf16, i16: PackedMatrix; let scratch: ConversionScratch }
        var prepared: [Shape: Prepared] = [:]
        for s in shapes {
            let w = uniform(s.n * s.k, 0.05)
            prepared[s] = Prepared(x: uniform(s.m * s.k, 1, offset: 0.2), w: w, b: uniform(s.n, 0.1),
                                   i8: PackedMatrix(w, out: s.n, in: s.k, precision: .int8)!,
                                   bf16: PackedMatrix(w, out: s.n, in: s.k, precision: .bfloat16)!,
                                   i16: PackedMatrix(w, out: s.n, in: s.k, arithmetic: .int16)!,
                                   scratch: ConversionScratch(rows: s.m, inFeatures: s.k))
        }

        for round in 0..<rounds {
            for s in shapes {
                let p = prepared[s]!
                var y = [Float](repeating: 0, count: s.m * s.n)
                func time(_ body: () -> Void) -> Double {
                    body()  // warm-up
                    var t: [Double] = []
                    for _ in 0..<repeats {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        body()
                        t.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                    }
                    return t.sorted()[t.count / 2]
                }
                var r: [String: Double] = [:]
                // sgemm then the bias pass, as the float32 encoder does it.
                r["sgemm"] = time {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(s.m), Int32(s.n), Int32(s.k),
                                1, p.x, Int32(s.k), p.w, Int32(s.k), 0, &y, Int32(s.n))
                }
                // OpenBLAS's idle workers spin (sched_yield) for a while after a call and would
                // take half of the two cores from the next kernel: let them park first. (The
                // encoder never interleaves them: its reduced-precision path calls no
                // multi-threaded sgemm.)
                Thread.sleep(forTimeInterval: 0.5)
                // Activation conversion (quantize / round to bf16) included: it is per call.
                let bytes = p.scratch.bytes(rows: s.m, inFeatures: s.k)
                r["int8"] = time { p.i8.multiply(p.x, rows: s.m, bias: p.b, into: &y, scratch: bytes) }
                r["bf16"] = time { p.bf16.multiply(p.x, rows: s.m, bias: p.b, into: &y, scratch: bytes) }
                // int8 mode's FFN up-projection on AVX512-FP16 CPUs: three int8 products (GOP/s of the layer's 2·M·N·K).
                r["int16"] = time { p.i16.multiply(p.x, rows: s.m, bias: p.b, into: &y, scratch: bytes) }
                if useOneDNN, let o = try runOneDNN(s.m, s.n, s.k) {
                    r["onednn int8 (u8s8s32)"] = o.int8
                    r["onednn bf16"] = o.bf16
                }
                for (e, v) in r { seconds[s, default: [:]][e, default: []].append(v) }
            }
            FileHandle.standardError.write(Data("round \(round + 1)/\(rounds) done\n".utf8))
        }

        // Table: GOP/s (2·M·N·K per call) and speed-up over sgemm.
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return left ? text + fill : fill + text
        }
        print("GOP/s (speed-up over sgemm), \(ProcessInfo.processInfo.activeProcessorCount) threads")
        print(pad("M × N × K", 20, left: true) + engines.map { pad($0, 24) }.joined())
        var records: [[String: Any]] = []
        for s in shapes {
            let ops = 2.0 * Double(s.m * s.n * s.k)
            let base = median(seconds[s]!["sgemm"]!)
            var line = pad("\(s.m) × \(s.n) × \(s.k)", 20, left: true)
            var rec: [String: Any] = ["M": s.m, "N": s.n, "K": s.k]
            var gops: [String: Double] = [:], raw: [String: [Double]] = [:]
            for e in engines {
                guard let v = seconds[s]?[e] else { line += pad("-", 24); continue }
                let t = median(v)
                gops[e] = ops / t / 1e9
                raw[e] = v
                line += pad(String(format: "%.0f (%.2f×)", ops / t / 1e9, base / t), 24)
            }
            rec["gops"] = gops
            rec["round_median_s"] = raw
            records.append(rec)
            print(line)
        }
        let record: [String: Any] = [
            "benchmark": "gemm",
            "date": ISO8601DateFormatter().string(from: Date()),
            "cpu": cpuModel(),
            "threads": ProcessInfo.processInfo.activeProcessorCount,
            "openblas": String(cString: openblas_get_config()),
            "rounds": rounds, "repeats": repeats,
            "note": "median over rounds of the median over repeats; int8/bf16 include the per-call activation conversion; oneDNN int8 leaves out the per-row scale/zero point",
            "shapes": records,
        ]
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        if let h = FileHandle(forWritingAtPath: output) ?? {
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            return FileHandle(forWritingAtPath: output)
        }() {
            h.seekToEndOfFile()
            h.write(data + Data("\n".utf8))
            try? h.close()
            print("appended to \(output)")
        }
    }

    /// Runs the oneDNN program on one shape (OMP_NUM_THREADS = cores); seconds per call.
    private func runOneDNN(_ m: Int, _ n: Int, _ k: Int) throws -> (int8: Double, bf16: Double)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: onednn)
        p.arguments = [String(m), String(n), String(k), String(repeats)]
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = String(ProcessInfo.processInfo.activeProcessorCount)
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let obj = try JSONSerialization.jsonObject(with: out) as? [String: Any],
              let i8 = obj["int8_s"] as? Double, let bf = obj["bf16_s"] as? Double else { return nil }
        return (i8, bf)
    }
}

private func cpuModel() -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
    for line in text.split(separator: "\n") where line.hasPrefix("model name") {
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }
    return "unknown"
}
