import ArgumentParser
import Foundation
import M3Model
import M3Search

/// `m3bench search-during-writes`: hybrid search latency (`search(encoded:)`, encoding
/// excluded) on one index, idle and while a writer commits without pause (issue 13, item 4).
///
/// The base index (cached under Benchmarks/work/, the `end-to-end` synthetic chunks at the
/// model's dimension, 4 chunks per document) is copied for each run, so every run starts
/// from the same file. Then, on that copy:
/// 1. idle: `--queries` searches one after another;
/// 2. under writes: a writer thread commits batch after batch (`--batch-documents` new
///    documents each, and every other commit replaces `--batch-documents / 2` documents of
///    the base: deletions, so tombstones and compaction are in the mix) while the same
///    searches run again.
/// Prints p50 / p99 / max of both phases, the writes' commit times, what a write spends
/// copying the published state (`SearchIndex.snapshotCopySeconds`), the graph's size and
/// the process's peak RSS. (The "before" figures in BENCHMARKS.md come from this file with
/// the copy measurement taken out, built at the commit before snapshots.)
struct SearchDuringWritesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search-during-writes", abstract: "Search p50/p99 idle and during a continuous write load.")

    @Option(help: "Chunks in the base index.") var chunks = 20_000
    @Option(help: "ColBERT rows per chunk.") var tokens = 16
    @Option(help: "Searches per phase.") var queries = 400
    @Option(help: "New documents (4 chunks each) per commit.") var batchDocuments = 8
    @Option(help: "Model folder (the index's dimension and identity; it never encodes here).")
    var model = "/work/models/bge-m3-full-random"
    @Option(help: "Seed.") var seed: UInt64 = 2024
    @Option(help: "A name for this run in the record (e.g. before, after).") var label = ""
    @Option(help: "Write this run's record (JSON) to this file.") var json: String?
    @Flag(help: "Append the record to Benchmarks/results/search_during_writes.jsonl.") var record = false

    static let chunksPerDocument = 4

    func run() throws {
        let m3 = try BGEM3(folder: model)
        let d = m3.config.hiddenSize
        let data = SyntheticChunks(seed: seed, dimension: d, centres: 1000, tokens: tokens)
        let base = QueryBench.workDir + "/sdw_\(chunks)x\(tokens)_\(d).m3index"
        try prepareBase(base, model: m3, data: data)
        let path = QueryBench.workDir + "/sdw_run.m3index"
        for suffix in ["", "-wal", "-shm", ".lock"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: base, toPath: path)
        let index = try SearchIndex(path: path, model: m3, options: .existing())
        print("index: \(index.chunkCount) chunks × \(tokens) ColBERT rows, \(d)-d; graph \(QueryBench.fmt(Double(index.graphMemoryBytes) / 1e6, 1)) MB")

        var rng = SeededRNG(seed: seed ^ 0x5D3)
        let encoded = (0..<queries).map { _ in data.query(chunk: Int(rng.next() % UInt64(chunks)), rows: 16, &rng) }
        let options = SearchOptions()
        for q in encoded.prefix(30) { _ = try index.search(encoded: q, options: options) }

        func searchAll() throws -> [UInt64] {
            try encoded.map { q in
                let t = QueryBench.now()
                _ = try index.search(encoded: q, options: options)
                return QueryBench.now() - t
            }
        }
        let idle = try searchAll()
        let idleRSS = peakRSSMegabytes()
        // What each write copies before its own work (median of 5).
        let copies = (0..<5).map { _ in index.snapshotCopySeconds() }
        let copyGraphMs = copies.map { $0.graph * 1e3 }.sorted()[2], copyTablesMs = copies.map { $0.tables * 1e3 }.sorted()[2]

        // The writer: commits until the searches are done.
        final class WriterLog: @unchecked Sendable {
            let lock = NSLock()
            var stop = false
            var commits: [UInt64] = []
            var error: Error?
        }
        let log = WriterLog()
        let writer = Thread { [chunks, batchDocuments] in
            var next = chunks  // chunk numbers of new documents continue the base's
            var replaced = 0
            var n = 0
            while !log.lock.withLock({ log.stop }) {
                var docs: [(id: String, chunks: [SearchIndex.EncodedChunk])] = []
                for _ in 0..<batchDocuments {
                    docs.append((id: "new\(next / Self.chunksPerDocument)", chunks: (next ..< next + Self.chunksPerDocument).map { data.chunk($0) }))
                    next += Self.chunksPerDocument
                }
                if n % 2 == 1 {
                    // Same ids as base documents, new chunks: their old chunks are deleted.
                    for _ in 0 ..< batchDocuments / 2 {
                        let doc = (replaced * 7919) % (chunks / Self.chunksPerDocument)
                        docs.append((id: "doc\(doc)", chunks: (next ..< next + Self.chunksPerDocument).map { data.chunk($0) }))
                        next += Self.chunksPerDocument
                        replaced += 1
                    }
                }
                n += 1
                let t = QueryBench.now()
                do { try index.add(encoded: docs) } catch {
                    log.lock.withLock { log.error = error; log.stop = true }
                    return
                }
                let took = QueryBench.now() - t
                log.lock.withLock { log.commits.append(took) }
            }
        }
        writer.start()
        // Let the first commit begin before timing.
        while log.lock.withLock({ log.commits.isEmpty && log.error == nil }) { usleep(1000) }
        let busy = try searchAll()
        log.lock.withLock { log.stop = true }
        while !writer.isFinished { usleep(1000) }
        if let error = log.error { throw error }
        let commits = log.commits
        let busyRSS = peakRSSMegabytes()

        func row(_ name: String, _ ns: [UInt64]) -> [String: Double] {
            let ms = ns.map { Double($0) / 1e6 }.sorted()
            let r = ["p50": QueryBench.Stats.percentile(ms, 0.5), "p99": QueryBench.Stats.percentile(ms, 0.99),
                     "max": ms.last ?? .nan, "mean": ms.reduce(0, +) / Double(max(ms.count, 1))]
            print("| \(name) | \(ns.count) | \(QueryBench.fmt(r["p50"]!, 1)) | \(QueryBench.fmt(r["p99"]!, 1)) | \(QueryBench.fmt(r["max"]!, 1)) |")
            return r
        }
        print("\n\(label.isEmpty ? "" : label + ": ")search latency, ms (hybrid, k 10, 100 candidates, encoding excluded)")
        print("| phase | n | p50 | p99 | max |")
        print("|---|---:|---:|---:|---:|")
        let idleRow = row("idle", idle)
        let busyRow = row("during writes", busy)
        let commitRow = row("commit (one write of \(batchDocuments)–\(batchDocuments * 3 / 2) documents)", commits)
        print("per write, snapshot copies: graph \(QueryBench.fmt(copyGraphMs, 1)) ms, tables \(QueryBench.fmt(copyTablesMs, 1)) ms (at the start)")
        print("chunks at the end: \(index.chunkCount); graph \(QueryBench.fmt(Double(index.graphMemoryBytes) / 1e6, 1)) MB; "
              + "peak RSS idle \(idleRSS) MB, after writes \(busyRSS) MB")

        var rec = QueryBench.environment()
        rec["benchmark"] = "search_during_writes"
        rec["label"] = label
        rec["parameters"] = ["chunks": chunks, "colbert_rows_per_chunk": tokens, "queries": queries, "dimension": d,
                             "batch_documents": batchDocuments, "chunks_per_document": Self.chunksPerDocument,
                             "seed": seed, "k": options.k, "candidates": options.candidates] as [String: Any]
        rec["idle_ms"] = idleRow
        rec["during_writes_ms"] = busyRow
        rec["commit_ms"] = commitRow
        rec["commits"] = commits.count
        rec["graph_bytes_end"] = index.graphMemoryBytes
        rec["peak_rss_mb"] = ["idle": idleRSS, "after_writes": busyRSS]
        rec["snapshot_copy_ms"] = ["graph": copyGraphMs, "tables": copyTablesMs]
        try QueryBench.write(record: rec, appendTo: record ? QueryBench.root + "/Benchmarks/results/search_during_writes.jsonl" : nil,
                             jsonOut: json)
    }

    /// Builds the base index once (commits of 2,000 chunks) and folds its log into the file.
    func prepareBase(_ path: String, model m3: BGEM3, data: SyntheticChunks) throws {
        if FileManager.default.fileExists(atPath: path), try SearchIndex(path: path, model: m3, options: .existing()).chunkCount == chunks {
            return
        }
        for suffix in ["", "-wal", "-shm", ".lock"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.createDirectory(atPath: QueryBench.workDir, withIntermediateDirectories: true)
        let index = try SearchIndex(path: path, model: m3)
        let t0 = Date()
        for start in stride(from: 0, to: chunks, by: 2000) {
            var docs: [(id: String, chunks: [SearchIndex.EncodedChunk])] = []
            var c = start
            while c < min(start + 2000, chunks) {
                let n = min(Self.chunksPerDocument, chunks - c)
                docs.append((id: "doc\(c / Self.chunksPerDocument)", chunks: (c ..< c + n).map { data.chunk($0) }))
                c += n
            }
            try index.add(encoded: docs)
            print("built \(min(start + 2000, chunks)) chunks in \(QueryBench.fmt(Date().timeIntervalSince(t0), 0)) s")
        }
        try index.checkpoint()
    }

    /// The process's peak resident set (VmHWM), in MB.
    func peakRSSMegabytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }
}
