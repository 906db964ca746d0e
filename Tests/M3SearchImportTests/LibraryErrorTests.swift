// An app's view of the library: this target imports M3Search and nothing else (no
// @testable, no lower module), so every name used here must be public API re-exported by
// M3Search. If an error type stopped being re-exported, this file would not compile.
import Foundation
import M3Search
import XCTest

final class LibraryErrorTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-app-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func model() throws -> BGEM3 { try BGEM3(folder: Self.fixtures.appendingPathComponent("models/tiny-safetensors").path) }

    /// Each layer's error, caught by its type, with a message in the library's terms.
    func testEveryErrorTypeCanBeCaughtByType() throws {
        // ModelError: a model folder that does not exist.
        do {
            _ = try BGEM3(folder: dir.appendingPathComponent("no-model").path)
            XCTFail("loaded a model from nowhere")
        } catch let e as ModelError {
            XCTAssertFalse(e.description.contains("--"), "no command-line flags in library errors: \(e)")
        }
        // ModelError from locate: says where it looked, in API terms.
        do {
            _ = try BGEM3.locate(environment: ["HOME": dir.path])
            XCTFail("found a model in an empty home")
        } catch let e as ModelError {
            guard case .modelNotFound = e else { return XCTFail("\(e)") }
            XCTAssertFalse(e.description.contains("--model"), "\(e)")
        }
        // TokenizerError: a SentencePiece model that is not one.
        let junk = dir.appendingPathComponent("junk.model")
        try Data("not a sentencepiece model".utf8).write(to: junk)
        do {
            _ = try XLMRobertaTokenizer(modelPath: junk.path)
            XCTFail("loaded a junk tokenizer")
        } catch is TokenizerError {}
        // IndexError: a vector of the wrong dimension (the index's calls throw it typed).
        var brute = try BruteForceIndex(dimension: 4)
        XCTAssertThrowsError(try brute.add(id: 1, vector: [1, 0, 0])) { error in
            XCTAssertEqual(error as? IndexError, .dimensionMismatch(expected: 4, actual: 3))
        }
        // EvaluationError: judgments that are not JSON Lines.
        let queries = dir.appendingPathComponent("q.jsonl"), qrels = dir.appendingPathComponent("qrels.tsv")
        try Data("{not json\n".utf8).write(to: queries)
        try Data("q1\td1\t1\n".utf8).write(to: qrels)
        XCTAssertThrowsError(try EvaluationSet(queriesFile: queries.path, qrelsFile: qrels.path)) { error in
            XCTAssertTrue(error is EvaluationError || (error as? M3SearchError)?.underlying is EvaluationError, "\(error)")
        }

        // StoreError under M3SearchError: a missing index, and a file that is not one.
        let m = try model()
        do {
            _ = try SearchIndex(path: dir.appendingPathComponent("none.m3index").path, model: m, options: IndexOptions(create: false))
            XCTFail("opened a missing index")
        } catch let e as M3SearchError {
            XCTAssertEqual(e.kind, .notFound)
            guard case StoreError.missing? = e.underlying else { return XCTFail("\(String(describing: e.underlying))") }
            XCTAssertFalse(e.message.contains("--"), "no command-line flags in library errors: \(e.message)")
        }
        let notIndex = dir.appendingPathComponent("text.m3index")
        try Data("plain text".utf8).write(to: notIndex)
        do {
            _ = try SearchIndex(path: notIndex.path, model: m)
            XCTFail("opened a text file as an index")
        } catch let e as M3SearchError {
            XCTAssertEqual(e.kind, .notAnIndex)
            XCTAssertTrue(e.underlying is StoreError)
            XCTAssertFalse(e.message.contains("--index"), e.message)
        }
    }

    /// The async search runs off the caller's executor and returns what the synchronous one
    /// does; filters are part of the public options.
    func testAsyncSearchAndFilters() async throws {
        let index = try SearchIndex(path: dir.appendingPathComponent("a.m3index").path, model: try model(),
                                    options: IndexOptions(maxLength: 32, overlap: 4))
        try await index.add([DocumentInput(id: "a.md", text: "Lighthouses guide ships.", metadata: ["lang": "en"]),
                             DocumentInput(id: "b.md", text: "Leuchttürme leiten Schiffe.", metadata: ["lang": "de"])])
        let options = SearchOptions(k: 5, filter: SearchFilter(metadata: ["lang": "de"]))
        let asyncReport = try await index.search("ships", options: options)
        let syncReport = try { try index.search("ships", options: options) }()
        XCTAssertEqual(asyncReport.results, syncReport.results)
        XCTAssertEqual(asyncReport.results.map(\.path), ["b.md"])
    }
}
