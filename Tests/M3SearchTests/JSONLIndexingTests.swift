import Foundation
@testable import M3Search
import XCTest

/// `indexJSONL`: BEIR corpus lines and {"id", …} lines, ids kept, title and text joined,
/// invalid lines reported by number without stopping the run, unchanged files a no-op.
final class JSONLIndexingTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-jsonl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testCorpusLinesIndexIncrementally() throws {
        let corpus = dir.appendingPathComponent("corpus.jsonl").path
        let lines = [
            #"{"_id": "d1", "title": "Apples", "text": "Apples grow on trees.", "metadata": {"url": "http://a", "rank": 3}}"#,
            #"{"_id": "d2", "title": "", "text": "Bicycles have two wheels."}"#,
            #"not json"#,
            "",
            #"{"id": 7, "text": "Cats sleep all day.", "metadata": {"source": "x"}}"#,
            #"{"_id": "d4"}"#,
            #"{"_id": "d1", "text": "a duplicate id"}"#,
        ]
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: corpus))
        let index = try SearchIndex(path: dir.appendingPathComponent("i.m3index").path,
                                    model: try BGEM3(folder: fixture("models/tiny-safetensors")), options: IndexOptions(maxLength: 32, overlap: 4))
        var s = try index.indexJSONL([corpus])
        XCTAssertEqual([s.indexed, s.skipped], [3, 3])
        XCTAssertTrue(s.warnings.contains { $0.hasPrefix(corpus + ":3: skipped, not valid JSON") }, "\(s.warnings)")
        XCTAssertTrue(s.warnings.contains { $0.hasPrefix(corpus + ":6: skipped") && $0.contains("text") })
        XCTAssertTrue(s.warnings.contains { $0.hasPrefix(corpus + ":7: skipped") && $0.contains("d1") })

        let documents = try index.store.documents()
        XCTAssertEqual(Set(documents.map(\.path)), ["d1", "d2", "7"])
        // Title and text joined with one space (BEIR / FlagEmbedding); an empty title adds nothing.
        var texts: [String: String] = [:]
        try index.store.forEachChunkWithDocument { d, row in texts[d.path, default: ""] += row.chunk.text }
        XCTAssertEqual(texts["d1"], "Apples Apples grow on trees.")
        XCTAssertEqual(texts["d2"], "Bicycles have two wheels.")
        let d1 = try XCTUnwrap(documents.first { $0.path == "d1" })
        XCTAssertEqual(IndexState.decodeMetadata(d1.metadata), ["url": "http://a", "rank": "3"])
        XCTAssertEqual(try index.search("Cats sleep all day.", options: SearchOptions(k: 1)).results.first?.path, "7")

        // Unchanged: nothing encoded.
        s = try index.indexJSONL([corpus])
        XCTAssertEqual([s.indexed, s.unchanged, s.chunks], [0, 3, 0])
        // One document changed: only it is encoded again.
        try Data(lines.map { $0.replacingOccurrences(of: "two wheels", with: "three wheels") }.joined(separator: "\n").utf8)
            .write(to: URL(fileURLWithPath: corpus))
        s = try index.indexJSONL([corpus])
        XCTAssertEqual([s.indexed, s.unchanged], [1, 2])
        XCTAssertEqual(try index.store.counts().documents, 3)
    }
}
