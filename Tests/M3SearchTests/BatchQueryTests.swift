import Foundation
@testable import M3Search
import M3TestSupport
import XCTest

/// `query --queries FILE` and TREC run files (issue 14 item 4), through the built binary.
/// The run files are re-scored here by a small independent implementation of trec_eval's
/// ndcg_cut, recall and reciprocal rank (ties ordered as trec_eval orders them), and must
/// give what `eval --json` reports.
final class BatchQueryTests: XCTestCase {
    static let model = fixture("models/tiny-safetensors")
    static let topics = ["lighthouses guide ships along the rocky coast at night",
                         "volcanoes erupt lava and ash from the mountain",
                         "bees collect nectar from flowers in the meadow",
                         "the orchestra tuned violins before the symphony",
                         "glaciers carve valleys as the ice slowly moves",
                         "bakers knead dough and bake bread at dawn",
                         "satellites orbit the earth and relay signals",
                         "coral reefs shelter fish in warm shallow seas",
                         "chess players plan openings and endgames",
                         "rivers carry sediment down to the delta",
                         "owls hunt mice silently in the dark forest",
                         "printing presses spread books across Europe"]

    struct Corpus {
        let dir: URL
        let index: String
        let docs: [String]
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    }

    static func corpus() throws -> Corpus {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-batch-\(UUID().uuidString)")
        let docsDir = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docsDir, withIntermediateDirectories: true)
        var docs: [String] = []
        for (i, text) in topics.enumerated() {
            let url = docsDir.appendingPathComponent("t\(i).txt")
            try Data("\(text). More about it: \(text).".utf8).write(to: url)
            docs.append(url.path)
        }
        let index = dir.appendingPathComponent("b.m3index").path
        let built = try runM3Search(["index", docsDir.path, "-i", index, "-m", model, "--max-length", "32", "--overlap", "4"], stdin: "")
        XCTAssertEqual(built.status, 0, built.stderr)
        return Corpus(dir: dir, index: index, docs: docs)
    }

    /// Each JSON line of a batch equals the single query's `--json` output, with its id;
    /// the plain-text form on stdin numbers queries by line.
    func testBatchLinesEqualSingleQueries() throws {
        let c = try Self.corpus()
        defer { try? FileManager.default.removeItem(at: c.dir) }
        let queries = [("q1", "ships at night"), ("7", "bread in the morning")]
        let jsonl = queries.map { #"{"_id": "\#($0.0)", "text": "\#($0.1)", "metadata": {}}"# }.joined(separator: "\n") + "\n"
        try Data(jsonl.utf8).write(to: URL(fileURLWithPath: c.path("q.jsonl")))
        let batch = try runM3Search(["query", "--queries", c.path("q.jsonl"), "-i", c.index, "-m", Self.model, "-k", "3"], stdin: "")
        XCTAssertEqual(batch.status, 0, batch.stderr)
        let lines = batch.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, queries.count, batch.stdout)
        let plain = try runM3Search(["query", "--queries", "-", "-i", c.index, "-m", Self.model, "-k", "3"],
                                    stdin: "\n" + queries.map(\.1).joined(separator: "\n\n") + "\n")
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let plainLines = plain.stdout.split(separator: "\n")
        XCTAssertEqual(plainLines.count, queries.count, plain.stdout)
        for (i, (id, text)) in queries.enumerated() {
            let single = try runM3Search(["query", text, "-i", c.index, "-m", Self.model, "-k", "3", "--json"], stdin: "")
            XCTAssertEqual(single.status, 0, single.stderr)
            let expected = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as? NSDictionary)
            for (line, expectedID) in [(lines[i], id), (plainLines[i], String(2 + 2 * i))] {
                let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                XCTAssertEqual(object["id"] as? String, expectedID)
                XCTAssertEqual(object["query"] as? String, text)
                XCTAssertEqual((object["results"] as? [Any])?.count, 3)
                var rest = object
                rest["id"] = nil
                rest["query"] = nil
                XCTAssertEqual(NSDictionary(dictionary: rest), expected, "query \(expectedID)")
            }
        }
        // A malformed line is named, and nothing is searched.
        try Data((jsonl + "{\"_id\": 3}\n").utf8).write(to: URL(fileURLWithPath: c.path("bad.jsonl")))
        let bad = try runM3Search(["query", "--queries", c.path("bad.jsonl"), "-i", c.index, "-m", Self.model], stdin: "")
        XCTAssertEqual(bad.status, 65, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("bad.jsonl:\(queries.count + 1):"), bad.stderr)
        XCTAssertTrue(bad.stdout.isEmpty)
        for usage in [["query", "x", "--queries", c.path("q.jsonl")], ["query"], ["query", "x", "--run-out", c.path("r")],
                      ["query", "--queries", c.path("q.jsonl"), "--run-out", c.path("r"), "--chunks"]] {
            XCTAssertEqual(try runM3Search(usage + ["-i", c.index, "-m", Self.model], stdin: "").status, 64, "\(usage)")
        }
    }

    /// `eval --run-out` writes the ranking it scored: re-scored independently, the run gives
    /// eval's numbers; `query --queries --run-out -k 100` writes the same run.
    func testRunFilesRescoreToEvalsNumbers() throws {
        let c = try Self.corpus()
        defer { try? FileManager.default.removeItem(at: c.dir) }
        let queries = ["ships and the sea", "music and instruments", "animals at night", "ice and rivers", "books and bread"]
        let qrels: [String: [String: Int]] = [
            "q1": [c.docs[0]: 2, c.docs[7]: 1, c.docs[6]: 0],
            "q2": [c.docs[3]: 2],
            "q3": [c.docs[10]: 2, c.docs[2]: 1],
            "q4": [c.docs[4]: 1, c.docs[9]: 2, c.docs[1]: 1],
            "q5": [c.docs[11]: 1, c.docs[5]: 1],
        ]
        try Data(queries.enumerated().map { #"{"_id": "q\#($0.offset + 1)", "text": "\#($0.element)"}"# }.joined(separator: "\n").utf8)
            .write(to: URL(fileURLWithPath: c.path("q.jsonl")))
        try Data(("query-id\tcorpus-id\tscore\n" + qrels.flatMap { q, docs in docs.map { "\(q)\t\($0.key)\t\($0.value)\n" } }.joined()).utf8)
            .write(to: URL(fileURLWithPath: c.path("qrels.tsv")))

        let eval = try runM3Search(["eval", "--queries", c.path("q.jsonl"), "--qrels", c.path("qrels.tsv"), "-i", c.index,
                                    "-m", Self.model, "-k", "3", "-j", "--run-out", c.path("eval.run"), "--run-tag", "evalrun"], stdin: "")
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let rows = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])?["results"] as? [[String: Any]])
        let hybrid = try XCTUnwrap(rows.first { $0["mode"] as? String == "dense+sparse+colbert" })
        let run = try Self.readRun(c.path("eval.run"))
        XCTAssertEqual(Set(run.keys), Set(qrels.keys))
        for (metric, value) in [("ndcg@3", Self.meanNDCG(run, qrels, k: 3)), ("recall@100", Self.meanRecall(run, qrels, k: 100)),
                                ("mrr@3", Self.meanMRR(run, qrels, k: 3))] {
            let reported = try XCTUnwrap(hybrid[metric] as? Double, metric)
            XCTAssertEqual(value, reported, accuracy: 1e-9, metric)
        }
        XCTAssertGreaterThan(hybrid["ndcg@3"] as? Double ?? 0, 0, "some relevant document in the top 3, or the check is empty")

        let query = try runM3Search(["query", "--queries", c.path("q.jsonl"), "-i", c.index, "-m", Self.model, "-k", "100",
                                     "--run-out", c.path("query.run"), "--run-tag", "evalrun"], stdin: "")
        XCTAssertEqual(query.status, 0, query.stderr)
        XCTAssertTrue(query.stdout.isEmpty, query.stdout)
        XCTAssertEqual(try String(contentsOfFile: c.path("query.run"), encoding: .utf8),
                       try String(contentsOfFile: c.path("eval.run"), encoding: .utf8))
    }

    /// Qrels naming files by relative paths (as BEIR-style sets written next to their
    /// documents do) score what the same qrels with the indexed, canonical ids score.
    func testRelativeQrelsPathsResolveToTheIndexedFiles() throws {
        let c = try Self.corpus()
        defer { try? FileManager.default.removeItem(at: c.dir) }
        try Data((#"{"_id": "q1", "text": "ships and the sea"}"# + "\n" + #"{"_id": "q2", "text": "ice and rivers"}"# + "\n").utf8)
            .write(to: URL(fileURLWithPath: c.path("q.jsonl")))
        func qrels(_ name: String, _ id: (Int) -> String) throws {
            try Data("query-id\tcorpus-id\tscore\nq1\t\(id(0))\t2\nq1\t\(id(7))\t1\nq2\t\(id(4))\t1\nq2\t\(id(9))\t2\n".utf8)
                .write(to: URL(fileURLWithPath: c.path(name)))
        }
        try qrels("absolute.tsv") { c.docs[$0] }
        try qrels("relative.tsv") { "docs/t\($0).txt" }
        func evaluate(_ file: String) throws -> RunResult {
            let run = try runM3Search(["eval", "--queries", "q.jsonl", "--qrels", file, "-i", c.index, "-m", Self.model, "-j"],
                                      stdin: "", currentDirectory: c.dir)
            XCTAssertEqual(run.status, 0, run.stderr)
            return run
        }
        let absolute = try evaluate("absolute.tsv"), relative = try evaluate("relative.tsv")
        XCTAssertFalse(relative.stderr.contains("not in the index"), relative.stderr)
        let rows = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(absolute.stdout.utf8)) as? [String: Any])?["results"] as? [[String: Any]])
        XCTAssertGreaterThan(rows.compactMap { $0["ndcg@10"] as? Double }.max() ?? 0, 0, "the check is empty")
        func results(_ run: RunResult) throws -> String {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            return String(decoding: try JSONSerialization.data(withJSONObject: object["results"] ?? [], options: .sortedKeys), as: UTF8.self)
        }
        XCTAssertEqual(try results(relative), try results(absolute))
    }

    /// A document id with a space cannot go into a run: a clear error, and no file.
    func testWhitespaceInAnIDIsAnError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-batch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("my docs"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("Lighthouses guide ships.".utf8).write(to: dir.appendingPathComponent("my docs/a.txt"))
        let index = dir.appendingPathComponent("w.m3index").path
        _ = try runM3Search(["index", dir.appendingPathComponent("my docs").path, "-i", index, "-m", Self.model], stdin: "")
        let run = dir.appendingPathComponent("out.run").path
        let result = try runM3Search(["query", "--queries", "-", "-i", index, "-m", Self.model, "--run-out", run], stdin: "ships\n")
        XCTAssertEqual(result.status, 65, result.stderr)
        XCTAssertTrue(result.stderr.contains("holds whitespace"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run))
    }

    // MARK: - An independent reader and scorer of run files

    /// qid → documents best first, ordered as trec_eval orders a run: by score, descending,
    /// ties by document id, descending (the rank column is ignored). Checks the six columns.
    static func readRun(_ path: String) throws -> [String: [String]] {
        var lines: [String: [(doc: String, score: Double, rank: Int)]] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            XCTAssertEqual(f.count, 6, String(line))
            XCTAssertEqual(f[1], "Q0")
            XCTAssertEqual(f[5], "evalrun")
            lines[f[0], default: []].append((f[2], try XCTUnwrap(Double(f[4])), try XCTUnwrap(Int(f[3]))))
        }
        return lines.mapValues { docs in
            XCTAssertEqual(docs.map(\.rank), Array(1 ... docs.count), "ranks 1…n in file order")
            XCTAssertEqual(Set(docs.map(\.doc)).count, docs.count, "each document once")
            return docs.sorted { $0.score != $1.score ? $0.score > $1.score : $0.doc > $1.doc }.map(\.doc)
        }
    }

    static func meanNDCG(_ run: [String: [String]], _ qrels: [String: [String: Int]], k: Int) -> Double {
        mean(qrels) { q, judged in
            let dcg = (run[q] ?? []).prefix(k).enumerated().reduce(0.0) { $0 + Double(judged[$1.element] ?? 0) / log2(Double($1.offset) + 2) }
            let ideal = judged.values.sorted(by: >).prefix(k).enumerated().reduce(0.0) { $0 + Double($1.element) / log2(Double($1.offset) + 2) }
            return dcg / ideal
        }
    }

    static func meanRecall(_ run: [String: [String]], _ qrels: [String: [String: Int]], k: Int) -> Double {
        mean(qrels) { q, judged in
            Double((run[q] ?? []).prefix(k).filter { (judged[$0] ?? 0) > 0 }.count) / Double(judged.values.filter { $0 > 0 }.count)
        }
    }

    static func meanMRR(_ run: [String: [String]], _ qrels: [String: [String: Int]], k: Int) -> Double {
        mean(qrels) { q, judged in
            guard let i = (run[q] ?? []).prefix(k).firstIndex(where: { (judged[$0] ?? 0) > 0 }) else { return 0 }
            return 1 / Double(i + 1)
        }
    }

    static func mean(_ qrels: [String: [String: Int]], _ value: (String, [String: Int]) -> Double) -> Double {
        qrels.map { value($0.key, $0.value) }.reduce(0, +) / Double(qrels.count)
    }
}
