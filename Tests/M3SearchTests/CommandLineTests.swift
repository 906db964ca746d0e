import Foundation
import M3TestSupport
import XCTest

/// The `m3search` binary end to end: its JSON Lines contract against FlagEmbedding's
/// reference outputs, and its errors.
final class CommandLineTests: XCTestCase {
    func testEncodeMatchesFlagEmbedding() throws {
        let reference = try loadJSON("reference/tiny-bin.json")
        let blocks = reference["encodings"] as! [[String: Any]]
        for block in blocks {
            let maxLength = block["max_length"] as! Int
            let items = block["items"] as! [[String: Any]]
            let input = items.map { jsonLine(["text": $0["text"] as! String]) }.joined()
            let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--max-length", String(maxLength)], stdin: input)
            XCTAssertEqual(run.status, 0, run.stderr)
            let lines = run.stdout.split(separator: "\n")
            XCTAssertEqual(lines.count, items.count)
            for (line, item) in zip(lines, items) {
                let out = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                XCTAssertEqual(out["input_ids"] as? [Int], item["input_ids"] as? [Int])
                XCTAssertLessThanOrEqual(maxDiff(out["dense"], item["dense"]), 1e-4)
                let ours = out["sparse"] as! [String: Double], theirs = item["sparse"] as! [String: Double]
                // Keys on one side only must be float noise at relu's 0 boundary.
                for k in Set(ours.keys).symmetricDifference(theirs.keys) {
                    XCTAssertLessThanOrEqual(ours[k] ?? theirs[k]!, 1e-5, "sparse key \(k) on one side only")
                }
                for k in Set(ours.keys).union(theirs.keys) { XCTAssertEqual(ours[k] ?? 0, theirs[k] ?? 0, accuracy: 1e-4) }
                let oc = out["colbert"] as! [[Double]], tc = item["colbert"] as! [[Double]]
                XCTAssertEqual(oc.count, tc.count)
                for (a, b) in zip(oc, tc) { XCTAssertLessThanOrEqual(maxDiff(a, b), 1e-4) }
            }
        }
    }

    /// --precision: the output states the precision actually run (int8 on a VNNI CPU, f32
    /// otherwise, with a note on stderr); an unknown name is a usage error.
    func testEncodePrecision() throws {
        let input = jsonLine(["text": "reduced precision"])
        let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--precision", "int8"], stdin: input)
        XCTAssertEqual(run.status, 0, run.stderr)
        let out = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let used = out["precision"] as? String
        XCTAssertTrue(used == "int8" || (used == "f32" && run.stderr.contains("AVX512-VNNI")), "\(String(describing: used)) \(run.stderr)")
        XCTAssertFalse((out["dense"] as? [Double] ?? []).isEmpty)
        let f32 = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--precision", "fp32"], stdin: input)
        XCTAssertTrue(f32.stdout.contains("\"precision\":\"f32\""), f32.stdout)
        let bad = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--precision", "int4"], stdin: input)
        XCTAssertNotEqual(bad.status, 0)
    }

    /// Every m3search a test spawns caches the model's tokenizer image and digests in the
    /// test run's folder (`TestModelCache`), never in ~/.cache.
    func testSpawnedCommandsCacheInTheTestRunsFolder() throws {
        let folder = TestModelCache.install()
        XCTAssertEqual(ProcessInfo.processInfo.environment["M3SEARCH_CACHE_DIR"], folder)
        let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--outputs", "dense"], stdin: jsonLine(["text": "cache"]))
        XCTAssertEqual(run.status, 0, run.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertTrue(names.contains { $0.hasPrefix("tokenizer-") }, "\(names)")
        let digests = try String(contentsOfFile: folder + "/file-digests", encoding: .utf8)
        XCTAssertTrue(digests.contains("tiny-bin/pytorch_model.bin"), digests)
    }

    /// `encode --explain` writes the model's load times on stderr; stdout keeps only the encodings.
    func testEncodeExplainWritesLoadTimesOnStderr() throws {
        let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin"), "--outputs", "dense", "--explain"],
                                  stdin: jsonLine(["text": "load times"]))
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.hasPrefix("model load "), run.stderr)
        XCTAssertTrue(run.stderr.contains("verification"), run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, run.stdout)
        let out = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        XCTAssertFalse((out?["dense"] as? [Double] ?? []).isEmpty, run.stdout)
    }

    func testScoreMatchesFlagEmbedding() throws {
        let reference = try loadJSON("reference/tiny-bin.json")
        let pairs = reference["scores"] as! [[String: Any]]
        let input = pairs.map { jsonLine(["query": $0["query"] as! String, "passage": $0["passage"] as! String]) }.joined()
        let run = try runM3Search(["score", "--model", fixture("models/tiny-bin"), "--weights", "0.4,0.3,0.3"], stdin: input)
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, pairs.count)
        for (line, pair) in zip(lines, pairs) {
            let out = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Double]
            for key in ["dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense"] {
                XCTAssertEqual(out[key] ?? .infinity, pair[key] as! Double, accuracy: 1e-4, key)
            }
        }
    }

    func testMissingModelFolderIsAClearError() throws {
        let run = try runM3Search(["encode", "--model", "/nonexistent/bge-m3"], stdin: "{\"text\": \"x\"}\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("/nonexistent/bge-m3"), run.stderr)
    }

    func testMissingHeadFileIsAClearError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-nohead-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = URL(fileURLWithPath: fixture("models/tiny-bin"))
        for name in try FileManager.default.contentsOfDirectory(atPath: src.path) where name != "sparse_linear.pt" {
            let target = src.appendingPathComponent(name).resolvingSymlinksInPath()
            try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: target)
        }
        let run = try runM3Search(["encode", "--model", dir.path], stdin: "{\"text\": \"x\"}\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("sparse_linear.pt"), run.stderr)
    }

    func testMalformedInputLineIsAClearError() throws {
        let run = try runM3Search(["encode", "--model", fixture("models/tiny-bin")], stdin: "{\"text\": \"ok\"}\nnot json\n")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("line 2"), run.stderr)
    }

    func testMalformedWeightsAreAClearError() throws {
        let run = try runM3Search(["score", "--model", fixture("models/tiny-bin"), "--weights", "0.4,abc"], stdin: "")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("weights"), run.stderr)
    }
}

// MARK: - Helpers

/// A path under Fixtures/. Also installs the test run's model cache (`TestModelCache`), so
/// that loading a fixture model, here or in a spawned m3search, never writes into ~/.cache.
func fixture(_ path: String) -> String {
    TestModelCache.install()
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        url = url.deletingLastPathComponent()
    }
    return url.appendingPathComponent("Fixtures").appendingPathComponent(path).path
}

func loadJSON(_ path: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture(path)))) as! [String: Any]
}

func jsonLine(_ object: [String: String]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
}

func maxDiff(_ a: Any?, _ b: Any?) -> Double {
    guard let a = a as? [Double], let b = b as? [Double], a.count == b.count else { return .infinity }
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// The m3search binary SwiftPM built next to the test bundle. Spawned processes inherit
/// the test run's model cache (`TestModelCache`), installed here before any of them runs.
var m3searchBinary: URL {
    TestModelCache.install()
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0])
    for dir in [testBinary.deletingLastPathComponent(), Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("m3search")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return testBinary.deletingLastPathComponent().appendingPathComponent("m3search")
}

/// `m3search index` and `m3search query` end to end through the binary.
final class IndexQueryCommandTests: XCTestCase {
    func testIndexThenQueryJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-cli-\(UUID().uuidString)")
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs.appendingPathComponent("sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("Lighthouses guide ships along the rocky coast at night.".utf8).write(to: docs.appendingPathComponent("light.txt"))
        try Data("<html><body><p>Volcanoes erupt lava.</p><script>ignored()</script></body></html>".utf8)
            .write(to: docs.appendingPathComponent("sub/volcano.html"))
        try Data([0, 1, 2, 3]).write(to: docs.appendingPathComponent("blob.bin"))
        let index = dir.appendingPathComponent("cli.m3index").path
        let model = fixture("models/tiny-safetensors")

        let run = try runM3Search(["index", docs.path, "--index", index, "--model", model, "--max-length", "32", "--overlap", "4"], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("indexed 2"), run.stdout)
        XCTAssertTrue(run.stdout.contains("skipped 1"), run.stdout)

        let again = try runM3Search(["index", docs.path, "--index", index, "--model", model], stdin: "")
        XCTAssertTrue(again.stdout.contains("indexed 0, unchanged 2"), again.stdout)

        let query = try runM3Search(["query", "lighthouses and ships", "--index", index, "--model", model, "--json", "--k", "2"], stdin: "")
        XCTAssertEqual(query.status, 0, query.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(query.stdout.utf8)) as! [String: Any]
        let results = json["results"] as! [[String: Any]]
        XCTAssertEqual(results.count, 2)
        let first = results[0]
        XCTAssertEqual(first["rank"] as? Int, 1)
        XCTAssertNotNil(first["score"] as? Double)
        let scores = first["scores"] as! [String: Any]
        for key in ["dense", "sparse", "colbert"] { XCTAssertNotNil(scores[key] as? Double, key) }
        XCTAssertEqual(Set(results.map { $0["path"] as! String }),
                       [docs.path + "/light.txt", docs.path + "/sub/volcano.html"])
        XCTAssertNotNil(first["chunk"] as? Int)
        XCTAssertFalse((results.first { ($0["path"] as! String).hasSuffix(".html") }?["snippet"] as? String ?? "ignored()").contains("ignored()"))

        // Dense mode alone reports the skipped modes as null.
        let dense = try runM3Search(["query", "volcano", "--index", index, "--model", model, "--json", "--mode", "dense"], stdin: "")
        let denseJSON = try JSONSerialization.jsonObject(with: Data(dense.stdout.utf8)) as! [String: Any]
        let denseScores = ((denseJSON["results"] as! [[String: Any]])[0]["scores"] as! [String: Any])
        XCTAssertTrue(denseScores["sparse"] is NSNull && denseScores["colbert"] is NSNull)
        XCTAssertNil(json["explain"], "explain only when asked for")

        // --explain: stage times, then the model's load times, then the index's open times;
        // the tokenizer and the digests came from the test run's cache, which the runs above filled.
        let explained = try runM3Search(["query", "volcano", "--index", index, "--model", model, "--explain"], stdin: "")
        XCTAssertEqual(explained.status, 0, explained.stderr)
        let explainLines = explained.stdout.split(separator: "\n")
        let loadLine = try XCTUnwrap(explainLines.dropLast().last)
        XCTAssertTrue(loadLine.hasPrefix("model load "), explained.stdout)
        let openLine = try XCTUnwrap(explainLines.last)
        XCTAssertTrue(openLine.hasPrefix("index open ") && openLine.contains("dense vectors"), explained.stdout)
        XCTAssertTrue(loadLine.contains("tokenizer") && loadLine.contains("(cached)"), explained.stdout)
        let explainedJSON = try runM3Search(["query", "volcano", "--index", index, "--model", model, "--json", "--explain"], stdin: "")
        let explainObject = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(explainedJSON.stdout.utf8)) as? [String: Any])?["explain"] as? [String: Any])
        let load = try XCTUnwrap(explainObject["model_load"] as? [String: Any], explainedJSON.stdout)
        for key in ["total_ms", "config_ms", "tokenizer_ms", "weights_ms", "verification_ms", "packing_ms"] {
            XCTAssertGreaterThanOrEqual(load[key] as? Double ?? -1, 0, key)
        }
        XCTAssertGreaterThan(load["total_ms"] as? Double ?? 0, 0)
        XCTAssertEqual(load["tokenizer_cached"] as? Bool, true)
        XCTAssertEqual(load["identity_cached"] as? Bool, true)
        XCTAssertEqual(load["packing_cached"] as? Bool, false)  // float32 packs nothing
        let open = try XCTUnwrap(explainObject["index_open"] as? [String: Any], explainedJSON.stdout)
        for key in ["total_ms", "store_ms", "documents_ms", "postings_ms", "graph_records_ms", "dense_vectors_ms",
                    "graph_checks_ms", "connections_ms"] {
            XCTAssertGreaterThanOrEqual(open[key] as? Double ?? -1, 0, key)
        }
        XCTAssertGreaterThan(open["total_ms"] as? Double ?? 0, 0)
    }

    func testQueryErrors() throws {
        let model = fixture("models/tiny-safetensors")
        let missing = try runM3Search(["query", "x", "--index", "/nonexistent/none.m3index", "--model", model], stdin: "")
        XCTAssertEqual(missing.status, 66)  // not found
        XCTAssertTrue(missing.stderr.contains("no index"), missing.stderr)
        XCTAssertTrue(missing.stderr.contains("--index /nonexistent/none.m3index"), "the command line names its flag: \(missing.stderr)")
        for bad in [["query", "   "], ["query", "x", "--k", "0"], ["query", "x", "--weights", "1,2"], ["query", "x", "--weights", "0,0,0"]] {
            let run = try runM3Search(bad + ["--index", "/nonexistent/none.m3index", "--model", model], stdin: "")
            XCTAssertEqual(run.status, 64, "\(bad)")  // usage
            XCTAssertFalse(run.stderr.isEmpty, "\(bad)")
        }
        let notIndex = FileManager.default.temporaryDirectory.appendingPathComponent("m3-not-\(UUID().uuidString).m3index")
        try Data("just text, not an index".utf8).write(to: notIndex)
        defer { try? FileManager.default.removeItem(at: notIndex) }
        let foreign = try runM3Search(["query", "x", "--index", notIndex.path, "--model", model], stdin: "")
        XCTAssertEqual(foreign.status, 65)  // data error
        XCTAssertTrue(foreign.stderr.contains("not an m3search index"), foreign.stderr)
        XCTAssertTrue(foreign.stderr.contains("Choose another --index path"), foreign.stderr)
    }

    /// Help is not an error: every command prints it and exits 0, through the same entry
    /// that maps errors to exit codes.
    func testHelpOfEveryCommandExitsZero() throws {
        for command in [[], ["index"], ["query"], ["serve"], ["check"], ["info"], ["encode"], ["score"], ["eval"], ["tune"],
                        ["export"], ["import"]] {
            let run = try runM3Search(command + ["--help"], stdin: "")
            XCTAssertEqual(run.status, 0, "\(command) \(run.stderr)")
            XCTAssertTrue(run.stdout.contains("USAGE: m3search"), "\(command) \(run.stdout)")
        }
        let model = fixture("models/tiny-safetensors")
        let noModel = try runM3Search(["encode", "--model", "/nonexistent/bge-m3"], stdin: "{\"text\": \"x\"}\n")
        XCTAssertEqual(noModel.status, 66, noModel.stderr)  // not found
        let badLine = try runM3Search(["encode", "--model", model], stdin: "{\"text\": \"x\"}\nnot json\n")
        XCTAssertEqual(badLine.status, 65, badLine.stderr)  // data error
    }
}
