import Foundation
@testable import M3Search
import XCTest

/// `m3search export` → `m3search import` through the binary: the imported index answers
/// like the original, and bad input is refused with the line named.
final class ExportImportTests: XCTestCase {
    var dir: URL!
    let model = fixture("models/tiny-safetensors")

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// An index of 12 corpus files (indexed from disk) and 2 library documents with metadata,
    /// with saved default weights, exported to export.jsonl.
    func buildAndExport() throws -> (SearchIndex, String) {
        // float16 ColBERT and float32 dense: the storages whose decode → re-encode is exact, so
        // the round trip can be compared byte for byte (int8, binary and PQ re-quantise).
        let index = try SearchIndex(path: path("a.m3index"), model: try BGEM3(folder: model), options: IndexOptions(maxLength: 48, overlap: 8, colbertStorage: .float16, denseStorage: .f32))
        let files = try FileManager.default.contentsOfDirectory(atPath: fixture("corpus")).sorted().filter { $0 != "LICENSE.md" }
        let summary = try index.indexFiles(files.prefix(12).map { fixture("corpus/" + $0) })
        XCTAssertEqual(summary.indexed, 12)
        try index.add([DocumentInput(id: "note-1", text: "Tabs\tand \"quotes\" and ünïcödé 🚀 in a note.", metadata: ["author": "ann", "lang": "en"]),
                       DocumentInput(id: "note-2", text: "A second note without metadata."),
                       DocumentInput(id: "empty", text: "")])   // no chunks: not exported
        XCTAssertEqual(index.documentCount, 15)
        try index.setDefaultWeights(FusionWeights(dense: 0.5, sparse: 0.2, colbert: 0.3))
        let run = try runM3Search(["export", "--format", "jsonl", "--index", path("a.m3index"), "--out", path("export.jsonl")], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        return (index, path("export.jsonl"))
    }

    func testRoundTripGivesTheSameResults() throws {
        let (original, export) = try buildAndExport()
        let lines = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1 + original.chunkCount)
        let header = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(header["format"] as? String, "m3search-export")
        XCTAssertEqual(header["chunks"] as? Int, original.chunkCount)
        XCTAssertEqual((header["settings"] as? [String: Any])?["modelID"] as? String, original.model.identity)
        // A chunk line holds the documented fields, and its vectors equal the stored ones.
        let line = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        XCTAssertEqual(Set(line.keys), ["id", "doc_id", "chunk", "char_start", "char_end", "token_count", "text", "metadata",
                                        "source", "dense", "sparse", "colbert"])
        XCTAssertEqual((line["dense"] as! [Double]).count, original.settings.dimension)
        XCTAssertTrue((line["colbert"] as! [[Double]]).allSatisfy { $0.count == original.settings.dimension })

        let run = try runM3Search(["import", export, "--index", path("b.m3index"), "--model", model], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("imported 14 documents, \(original.chunkCount) chunks"), run.stdout)

        let imported = try SearchIndex(path: path("b.m3index"), model: try BGEM3(folder: model), options: .existing())
        XCTAssertEqual(imported.settings, original.settings)
        XCTAssertEqual(imported.defaultWeights, original.defaultWeights)
        XCTAssertEqual(imported.documentCount, original.documentCount - 1)
        XCTAssertEqual(header["documents"] as? Int, 14)
        XCTAssertTrue(try imported.check().isSound)
        let queries = ["how does the assert statement work", "augmented assignment", "asynchronous iteration",
                       "a note with metadata", "attribute references", "binary arithmetic operations"]
        for q in queries {
            for options in [SearchOptions(k: 10), SearchOptions(k: 20, groupByDocument: false), SearchOptions(k: 5, mode: .sparse),
                            SearchOptions(k: 5, weights: FusionWeights(dense: 0.2, sparse: 0, colbert: 0.8))] {
                let a = try original.search(q, options: options).results, b = try imported.search(q, options: options).results
                XCTAssertEqual(a.map(\.path), b.map(\.path), q)
                XCTAssertEqual(a.map(\.chunk), b.map(\.chunk), q)
                XCTAssertEqual(a.map(\.charRange), b.map(\.charRange), q)
                XCTAssertEqual(a.map(\.text), b.map(\.text), q)
                XCTAssertEqual(a.map { $0.metadata ?? [:] }, b.map { $0.metadata ?? [:] }, q)
                for (x, y) in zip(a, b) {
                    XCTAssertEqual(x.score, y.score, accuracy: 1e-6)
                    for (s, t) in [(x.dense, y.dense), (x.sparse, y.sparse), (x.colbert, y.colbert)] {
                        XCTAssertEqual(s == nil, t == nil)
                        if let s, let t { XCTAssertEqual(s, t, accuracy: 1e-6) }
                    }
                }
            }
        }
        // Exporting the imported index gives the same file, byte for byte.
        let again = try runM3Search(["export", "--index", path("b.m3index")], stdin: "")
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.stdout, try String(contentsOfFile: export, encoding: .utf8))
    }

    /// Each kind of bad line is refused with its line number, and nothing is written.
    func testBadImportsNameTheLineAndWriteNothing() throws {
        let (_, export) = try buildAndExport()
        let lines = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        func edited(_ line: Int, _ change: (inout [String: Any]) -> Void) throws -> String {
            var object = try JSONSerialization.jsonObject(with: Data(lines[line - 1].utf8)) as! [String: Any]
            change(&object)
            var copy = lines
            copy[line - 1] = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            return copy.joined(separator: "\n")
        }
        var cases: [(String, String, String)] = [
            ("not json", lines[0] + "\n" + lines[1] + "\n{\"id\": \n" + lines[3...].joined(separator: "\n"), ":3: invalid JSON"),
            ("no header", lines[1...].joined(separator: "\n"), ":1: the first line is not an `m3search export` header"),
            ("truncated", lines.prefix(5).joined(separator: "\n"), "truncated"),
            ("out of order", ([lines[0], lines[2], lines[1]] + lines[3...]).joined(separator: "\n"), ":2: expected chunk 0"),
        ]
        cases.append(("short dense", try edited(4) { $0["dense"] = [0.5] }, ":4: \"dense\" must be an array of 16 numbers"))
        cases.append(("overflowing float", try edited(4) { $0["dense"] = [Double](repeating: 1e39, count: 16) }, ":4: a dense value is not a finite float32"))
        cases.append(("string in colbert", try edited(6) { o in
            var rows = o["colbert"] as! [[Any]]; rows[0][3] = "x"; o["colbert"] = rows }, ":6: colbert row 0 must hold 16 numbers"))
        cases.append(("bad sparse key", try edited(5) { $0["sparse"] = ["x": 0.5] }, ":5: sparse key \"x\""))
        cases.append(("negative weight", try edited(5) { $0["sparse"] = ["12": -0.5] }, ":5: sparse weight of token 12 must be positive"))
        cases.append(("ragged colbert", try edited(6) { $0["colbert"] = [[0.1, 0.2]] }, ":6: colbert row 0 must hold 16 numbers"))
        cases.append(("unknown field", try edited(2) { $0["extra"] = 1 }, ":2: unknown field \"extra\""))
        cases.append(("bad id", try edited(2) { $0["id"] = "other" }, ":2: \"id\" must be"))
        cases.append(("wrong model", try edited(1) { o in
            var s = o["settings"] as! [String: Any]; s["modelID"] = "0000000000000000"; o["settings"] = s }, "was exported from an index of model 0000"))
        for (name, text, message) in cases {
            let file = path("bad-\(name.replacingOccurrences(of: " ", with: "-")).jsonl")
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            let target = path("bad.m3index")
            let run = try runM3Search(["import", file, "--index", target, "--model", model], stdin: "")
            XCTAssertNotEqual(run.status, 0, name)
            XCTAssertTrue(run.stderr.contains(message), "\(name): \(run.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: target), "\(name): an index was written")
        }
        // An index of other settings is not mixed with the export.
        _ = try SearchIndex(path: path("other.m3index"), model: try BGEM3(folder: model), options: IndexOptions(maxLength: 96, overlap: 8))
        let mixed = try runM3Search(["import", export, "--index", path("other.m3index"), "--model", model], stdin: "")
        XCTAssertNotEqual(mixed.status, 0)
        XCTAssertTrue(mixed.stderr.contains("max length"), mixed.stderr)
    }
}
