import Foundation
@testable import M3Search
import XCTest

/// Metrics against hand-computed values, the BEIR readers and their errors.
final class EvaluationMetricTests: XCTestCase {
    // log2 values written out, so the expectations do not reuse the code under test.
    let log2of3 = 1.584962500721156, log2of5 = 2.321928094887362

    /// Ranking a b c d e; judged: b = 2, d = 1, x = 3 (never retrieved), a = 0 (judged not relevant).
    let ranking = ["a", "b", "c", "d", "e"]
    let judgments = ["a": 0, "b": 2, "d": 1, "x": 3]

    func testNDCGWithGradedRelevance() {
        // DCG@10 = 2/log2(3) + 1/log2(5); ideal order x(3) b(2) d(1): 3/log2(2) + 2/log2(3) + 1/log2(4).
        let ndcg10 = (2 / log2of3 + 1 / log2of5) / (3 + 2 / log2of3 + 0.5)
        XCTAssertEqual(RankingMetric.ndcg(10).value(ranking: ranking, judgments: judgments), ndcg10, accuracy: 1e-12)
        XCTAssertEqual(ndcg10, 0.35543, accuracy: 1e-5)
        // At 2 the ideal list is cut at 2 as well: 3 + 2/log2(3).
        XCTAssertEqual(RankingMetric.ndcg(2).value(ranking: ranking, judgments: judgments),
                       (2 / log2of3) / (3 + 2 / log2of3), accuracy: 1e-12)
        XCTAssertEqual(RankingMetric.ndcg(1).value(ranking: ranking, judgments: judgments), 0)
        // A perfect ranking scores 1.
        XCTAssertEqual(RankingMetric.ndcg(10).value(ranking: ["x", "b", "d"], judgments: judgments), 1, accuracy: 1e-12)
    }

    func testRecallAndMRR() {
        XCTAssertEqual(RankingMetric.recall(3).value(ranking: ranking, judgments: judgments), 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(RankingMetric.recall(100).value(ranking: ranking, judgments: judgments), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(RankingMetric.mrr(10).value(ranking: ranking, judgments: judgments), 0.5)
        XCTAssertEqual(RankingMetric.mrr(1).value(ranking: ranking, judgments: judgments), 0)
        XCTAssertEqual(RankingMetric.mrr(10).value(ranking: ["c", "e", "d"], judgments: judgments), 1.0 / 3, accuracy: 1e-12)
    }

    /// The mean skips queries without a relevant judgment and ignores unjudged ones.
    func testMeanOverJudgedQueries() {
        let qrels = ["q1": judgments, "q2": ["z": 1], "q3": ["a": 0]]
        let rankings = ["q1": ranking, "q2": ["y", "z"], "q3": ["a"], "q4": ["a"]]
        // q1: 0.5, q2: 0.5; q3 (no relevant document) and q4 (no judgments) are left out.
        XCTAssertEqual(RankingMetric.mean(.mrr(10), rankings: rankings, qrels: qrels), 0.5)
        XCTAssertEqual(RankingMetric.mean(.recall(1), rankings: rankings, qrels: qrels), 0)
        XCTAssertEqual(RankingMetric.mean(.ndcg(10), rankings: rankings, qrels: qrels),
                       ((2 / log2of3 + 1 / log2of5) / (3 + 2 / log2of3 + 0.5) + 1 / log2of3) / 2, accuracy: 1e-12)
    }

    /// Per-query values of real m3search rankings of the demo set against pytrec_eval's
    /// (trec_eval's C code: ndcg_cut.10, recall.100, recip_rank on the top 10), written by
    /// Fixtures/eval/pytrec_reference.py.
    func testMatchesPytrecEval() throws {
        let reference = try loadJSON("eval/pytrec-reference.json")
        let qrels = try EvaluationSet.readQrels(file: fixture("eval/qrels.tsv"))
        let modes = reference["modes"] as! [String: [String: Any]]
        XCTAssertEqual(Set(modes.keys), ["dense", "hybrid"])
        var compared = 0
        for (mode, data) in modes {
            let rankings = data["rankings"] as! [String: [String]]
            XCTAssertEqual(rankings.count, 22)
            for (name, metric) in [("ndcg@10", RankingMetric.ndcg(10)), ("recall@100", .recall(100)), ("mrr@10", .mrr(10))] {
                let expected = data[name] as! [String: Double]
                for (query, ranking) in rankings {
                    XCTAssertEqual(metric.value(ranking: ranking, judgments: qrels[query]!), expected[query]!, accuracy: 1e-9, "\(mode) \(name) \(query)")
                    compared += 1
                }
                XCTAssertEqual(RankingMetric.mean(metric, rankings: rankings, qrels: qrels),
                               expected.values.reduce(0, +) / Double(expected.count), accuracy: 1e-9, "\(mode) \(name)")
            }
            XCTAssertGreaterThan((data["ndcg@10"] as! [String: Double]).values.filter { $0 > 0 }.count, 0, "\(mode): some queries must score")
        }
        XCTAssertEqual(compared, 2 * 3 * 22)
    }

    func testMetricNames() throws {
        XCTAssertEqual(try RankingMetric(parsing: "nDCG@10"), .ndcg(10))
        XCTAssertEqual(try RankingMetric(parsing: "recall@100"), .recall(100))
        XCTAssertEqual(try RankingMetric(parsing: "mrr@5").description, "mrr@5")
        for bad in ["ndcg", "map@10", "ndcg@0", "ndcg@x", "@10"] {
            XCTAssertThrowsError(try RankingMetric(parsing: bad), bad)
        }
    }

    func testWeightGrid() throws {
        let grid = try weightGrid(step: 0.1)
        XCTAssertEqual(grid.count, 66)
        XCTAssertTrue(grid.allSatisfy { abs($0.dense + $0.sparse + $0.colbert - 1) < 1e-6 })
        XCTAssertEqual(Set(grid.map { "\($0)" }).count, 66)
        XCTAssertEqual(try weightGrid(step: 0.5).count, 6)
        XCTAssertEqual(try weightGrid(step: 1).count, 3)
        for bad in [0.3, 0, -0.1, 0.001] { XCTAssertThrowsError(try weightGrid(step: bad), "\(bad)") }
    }

    // MARK: - Readers

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-evalsets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func testReadsBEIRFiles() throws {
        let queries = try file("q.jsonl", """
            {"_id": "q1", "text": "first query", "metadata": {"source": "x"}}

            {"_id": 7, "text": "second query"}\r
            """)
        XCTAssertEqual(try EvaluationSet.readQueries(file: queries),
                       [.init(id: "q1", text: "first query"), .init(id: "7", text: "second query")])
        let withHeader = try file("a.tsv", "query-id\tcorpus-id\tscore\nq1\tdocs/a b.txt\t2\nq1\td2\t0\n7\td3\t1\n")
        XCTAssertEqual(try EvaluationSet.readQrels(file: withHeader), ["q1": ["docs/a b.txt": 2, "d2": 0], "7": ["d3": 1]])
        let noHeader = try file("b.tsv", "q1\td1\t1\n")
        XCTAssertEqual(try EvaluationSet.readQrels(file: noHeader), ["q1": ["d1": 1]])
        let trec = try file("c.txt", "q1 0 d1 1\nq1 0 d2 3\n")
        XCTAssertEqual(try EvaluationSet.readQrels(file: trec), ["q1": ["d1": 1, "d2": 3]])
        let set = try EvaluationSet(queriesFile: queries, qrelsFile: withHeader)
        XCTAssertEqual(set.judgedQueries.map(\.id), ["q1", "7"])
    }

    func testCommittedDemoSetReads() throws {
        let set = try EvaluationSet(queriesFile: fixture("eval/queries.jsonl"), qrelsFile: fixture("eval/qrels.tsv"))
        XCTAssertEqual(set.queries.count, 23)
        XCTAssertEqual(set.judgedQueries.count, 22)
        for (_, docs) in set.qrels {
            for doc in docs.keys {
                XCTAssertTrue(FileManager.default.fileExists(atPath: fixture(String(doc.dropFirst("Fixtures/".count)))), doc)
            }
        }
    }

    func testMalformedFilesNameTheLine() throws {
        func expect(_ body: @autoclosure () throws -> Any, line: Int, containing: String, file: String) {
            XCTAssertThrowsError(try body()) { error in
                guard let e = error as? M3SearchError, e.kind == .invalidInput,
                      case EvaluationError.malformed(let f, let l, _)? = e.underlying else { return XCTFail("\(error)") }
                XCTAssertEqual(f, file)
                XCTAssertEqual(l, line, "\(error)")
                XCTAssertTrue("\(error)".contains(containing), "\(error)")
                XCTAssertTrue("\(error)".contains("\(file):\(line):"), "\(error)")
            }
        }
        let ok = "{\"_id\": \"q1\", \"text\": \"a\"}\n"
        for (text, line, message) in [
            (ok + "{\"_id\": \"q2\", \"text\": \"b\"\n", 2, "not a JSON object"),
            (ok + ok, 2, "appears twice"),
            (ok + "\n{\"_id\": \"q3\"}\n", 3, "no \"text\""),
            ("{\"text\": \"a\"}\n", 1, "no \"_id\""),
            ("{\"_id\": \"q1\", \"text\": \"  \"}\n", 1, "empty text"),
            ("{\"_id\": 1.5, \"text\": \"x\"}\n", 1, "\"_id\" must be"),
            ("[1, 2]\n", 1, "not a JSON object"),
        ] {
            let path = try file("bad.jsonl", text)
            expect(try EvaluationSet.readQueries(file: path), line: line, containing: message, file: path)
        }
        for (text, line, message) in [
            ("q1\td1\t1\nq1\td2\n", 2, "expected 3"),
            ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, "not a non-negative integer"),
            ("q1\td1\t-1\n", 1, "not a non-negative integer"),
            ("q1\td1\t1.5\n", 1, "not a non-negative integer"),
            ("q1\td1\t1\nq1\td1\t2\n", 2, "twice"),
            ("q1\t\t1\n", 1, "empty"),
        ] {
            let path = try file("bad.tsv", text)
            expect(try EvaluationSet.readQrels(file: path), line: line, containing: message, file: path)
        }
        XCTAssertThrowsError(try EvaluationSet.readQrels(file: try file("empty.tsv", "query-id\tcorpus-id\tscore\n"))) { error in
            XCTAssertEqual((error as? M3SearchError)?.underlying as? EvaluationError,
                           .empty(file: dir.appendingPathComponent("empty.tsv").path, what: "judgments"))
        }
        XCTAssertThrowsError(try EvaluationSet.readQueries(file: "/nonexistent/q.jsonl")) { error in
            XCTAssertEqual((error as? M3SearchError)?.kind, .notFound)
            XCTAssertTrue("\(error)".contains("Cannot read /nonexistent/q.jsonl"), "\(error)")
        }
    }
}

/// `CandidatePool` against the real search, tune against brute force, saved default weights.
final class EvaluationSearchTests: XCTestCase {
    /// The committed demo set with its document ids rewritten to where the shared corpus index has them.
    static func demoSet() throws -> EvaluationSet {
        var set = try EvaluationSet(queriesFile: fixture("eval/queries.jsonl"), qrelsFile: fixture("eval/qrels.tsv"))
        set.qrels = set.qrels.mapValues { docs in
            Dictionary(uniqueKeysWithValues: docs.map { (fixture("corpus") + "/" + $0.key.dropFirst("Fixtures/corpus/".count), $0.value) })
        }
        return set
    }

    static let settings: [FusionWeights] = [
        FusionWeights(dense: 1, sparse: 0, colbert: 0), FusionWeights(dense: 0, sparse: 1, colbert: 0),
        FusionWeights(dense: 0, sparse: 0, colbert: 1), FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0),
        FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0.3), FusionWeights(dense: 0.2, sparse: 0, colbert: 0.8),
    ]

    /// Re-fusing the pool gives exactly the documents, in order, that `search` returns with
    /// the same weights (k = 100, default candidates), and the modes equal `--mode X`.
    func testPoolRankingsEqualRealSearch() throws {
        let index = try SearchEngineTests.corpusIndex()
        let set = try Self.demoSet()
        let pool = try index.candidatePool(for: set)
        XCTAssertEqual(pool.queryCount, 22)
        XCTAssertTrue(pool.unknownDocuments(in: set).isEmpty, "\(pool.unknownDocuments(in: set))")
        for w in Self.settings {
            let rankings = pool.rankings(weights: w)
            for q in set.judgedQueries.prefix(8) {
                let results = try index.search(q.text, options: SearchOptions(k: 100, weights: w)).results
                XCTAssertEqual(rankings[q.id], results.map(\.path), "\(q.id) \(w)")
                XCTAssertGreaterThan(results.count, 10)
                // The fused score is the model's reference fusion of the reported mode scores, bit for bit.
                for r in results {
                    let parts = [(w.dense, r.dense), (w.sparse, r.sparse), (w.colbert, r.colbert)].filter { $0.0 > 0 }
                    XCTAssertEqual(r.score, Scores.fused(parts.map { $0.1! }, weights: parts.map(\.0)))
                }
            }
        }
        for (mode, w) in zip([SearchOptions.Mode.dense, .sparse, .colbert], Self.settings) {
            let rankings = pool.rankings(weights: w)
            for q in set.judgedQueries.prefix(4) {
                let real = try index.search(q.text, options: SearchOptions(k: 100, mode: mode)).results.map(\.path)
                XCTAssertEqual(rankings[q.id], real, "\(q.id) \(mode)")
            }
        }
    }

    /// Every grid point's metrics from the pool equal a brute-force evaluation that runs the
    /// real search per query and weight setting, and `m3search tune` picks a point whose
    /// brute-force value is the maximum.
    func testTuneFindsTheBestGridPoint() throws {
        let index = try SearchEngineTests.corpusIndex()
        let set = try Self.demoSet()
        let queries = set.judgedQueries
        let encoded = try index.model.encode(queries.map(\.text), options: EncodeOptions(maxLength: 512))
        let pool = try index.candidatePool(for: set)
        let grid = try weightGrid(step: 0.25)
        var brute: [String: Double] = [:]
        for w in grid {
            var rankings: [String: [String]] = [:]
            for (q, e) in zip(queries, encoded) {
                rankings[q.id] = try index.search(encoded: e, options: SearchOptions(k: 100, weights: w)).results.map(\.path)
            }
            // nDCG@10 averaged by hand over the judged queries.
            var sum = 0.0
            for q in queries {
                let judged = set.qrels[q.id]!
                var dcg = 0.0, idcg = 0.0
                for (i, doc) in rankings[q.id]!.prefix(10).enumerated() { dcg += Double(judged[doc] ?? 0) / log2(Double(i) + 2) }
                for (i, g) in judged.values.sorted(by: >).prefix(10).enumerated() { idcg += Double(g) / log2(Double(i) + 2) }
                sum += dcg / idcg
            }
            brute["\(w)"] = sum / Double(queries.count)
            XCTAssertEqual(pool.evaluate(weights: w, metrics: [.ndcg(10)], qrels: set.qrels)[.ndcg(10)]!, brute["\(w)"]!, accuracy: 1e-12, "\(w)")
        }
        let best = brute.values.max()!
        XCTAssertGreaterThan(best, brute.values.min()!, "the grid should not be flat on the demo set")

        // The command line on the same index and set (ids rewritten into a temporary qrels file).
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-tune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let qrels = dir.appendingPathComponent("qrels.tsv")
        try Data(set.qrels.flatMap { q, docs in docs.map { "\(q)\t\($0.key)\t\($0.value)\n" } }.joined().utf8).write(to: qrels)
        let run = try runM3Search(["tune", "--queries", fixture("eval/queries.jsonl"), "--qrels", qrels.path, "--step", "0.25",
                                   "--index", SearchEngineTests.shared!.1, "--model", fixture("models/tiny-safetensors"), "--json"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let chosen = (json["best"] as! [String: Any])
        let w = chosen["weights"] as! [String: Double]
        let weights = FusionWeights(dense: Float(w["dense"]!), sparse: Float(w["sparse"]!), colbert: Float(w["colbert"]!))
        XCTAssertEqual(brute["\(weights)"]!, best, accuracy: 1e-12, "tune chose \(weights)")
        XCTAssertEqual(chosen["ndcg@10"] as! Double, best, accuracy: 1e-12)
        XCTAssertEqual(json["grid_points"] as? Int, 15)
        XCTAssertTrue(run.stderr.contains("1 of 23 queries"), run.stderr)
    }

    /// `tune --save` stores the weights; `query` without --weights and library searches
    /// without weights then use them; an explicit --weights still wins.
    func testSavedWeightsBecomeTheDefault() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-save-\(UUID().uuidString)")
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let texts = ["Lighthouses guide ships along the rocky coast at night.", "Volcanoes erupt lava and ash.",
                     "Bees make honey from the nectar of flowers.", "Glaciers carve valleys over thousands of years."]
        for (i, t) in texts.enumerated() { try Data(t.utf8).write(to: docs.appendingPathComponent("d\(i).txt")) }
        let index = dir.appendingPathComponent("s.m3index").path
        let model = fixture("models/tiny-safetensors")
        XCTAssertEqual(try runM3Search(["index", docs.path, "--index", index, "--model", model], stdin: "").status, 0)
        let queries = dir.appendingPathComponent("q.jsonl").path, qrels = dir.appendingPathComponent("qrels.tsv").path
        try Data("{\"_id\":\"1\",\"text\":\"ships at night\"}\n{\"_id\":\"2\",\"text\":\"honey bees\"}\n".utf8).write(to: URL(fileURLWithPath: queries))
        try Data("1\t\(docs.path)/d0.txt\t1\n2\t\(docs.path)/d2.txt\t1\n".utf8).write(to: URL(fileURLWithPath: qrels))

        let tune = try runM3Search(["tune", "--queries", queries, "--qrels", qrels, "--step", "0.5", "--save",
                                    "--index", index, "--model", model, "--json"], stdin: "")
        XCTAssertEqual(tune.status, 0, tune.stderr)
        let best = ((try JSONSerialization.jsonObject(with: Data(tune.stdout.utf8)) as! [String: Any])["best"] as! [String: Any])["weights"] as! [String: Double]
        let saved = FusionWeights(dense: Float(best["dense"]!), sparse: Float(best["sparse"]!), colbert: Float(best["colbert"]!))

        let opened = try SearchIndex(path: index, model: try BGEM3(folder: model), options: .existing())
        XCTAssertTrue(opened.hasSavedWeights)
        XCTAssertEqual(opened.defaultWeights, saved)
        let modes = [("dense", saved.dense), ("sparse", saved.sparse), ("colbert", saved.colbert)]

        // query without --weights: fused score = Σ wᵢ·sᵢ / Σ wᵢ with the saved weights, and a
        // mode saved at 0 is skipped (null).
        let query = try runM3Search(["query", "ships at night", "--index", index, "--model", model, "--json"], stdin: "")
        XCTAssertEqual(query.status, 0, query.stderr)
        for r in (try JSONSerialization.jsonObject(with: Data(query.stdout.utf8)) as! [String: Any])["results"] as! [[String: Any]] {
            let scores = r["scores"] as! [String: Any]
            var num = 0.0, den = 0.0
            for (name, w) in modes {
                if w == 0 { XCTAssertTrue(scores[name] is NSNull, name); continue }
                num += Double(w) * (scores[name] as! Double)
                den += Double(w)
            }
            XCTAssertEqual(r["score"] as! Double, num / den, accuracy: 1e-5)
        }
        // The library without weights equals explicit saved weights; explicit weights still win.
        XCTAssertEqual(try opened.search("honey bees").results, try opened.search("honey bees", options: SearchOptions(weights: saved)).results)
        let other = FusionWeights(dense: 0.1, sparse: 0.2, colbert: 0.7)
        XCTAssertNotEqual(other, saved)
        let explicit = try opened.search("honey bees", options: SearchOptions(weights: other)).results[0]
        XCTAssertEqual(explicit.score, (0.1 * explicit.dense! + 0.2 * explicit.sparse! + 0.7 * explicit.colbert!) / 1.0, accuracy: 1e-5)

        // Forgetting them returns to 0.4/0.3/0.3.
        try opened.setDefaultWeights(nil)
        XCTAssertFalse(opened.hasSavedWeights)
        XCTAssertEqual(opened.defaultWeights, FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0.3))
        XCTAssertThrowsError(try opened.setDefaultWeights(FusionWeights(dense: 0, sparse: 0, colbert: 0)))
        XCTAssertThrowsError(try opened.setDefaultWeights(FusionWeights(dense: -1, sparse: 1, colbert: 1)))
    }
}
