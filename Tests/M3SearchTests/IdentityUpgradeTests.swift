import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Indexes and exports written before model identity v2 (issue 16 item 3) record the
/// model's first-generation identity. Fixtures/indexes/pre-identity-v2.sqlite is such an
/// index, written by an m3search of that time with the tiny model: it is accepted, and its
/// record upgraded on the first writable open; another model is still refused.
final class IdentityUpgradeTests: XCTestCase {
    /// The first-generation identity of models/tiny-safetensors, as the index records it.
    let legacyID = "21e51d82208c2980"
    let tinyModel = fixture("models/tiny-safetensors")
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-identity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A copy of the pre-v2 index (tests never write into Fixtures/).
    func oldIndex() throws -> String {
        let path = dir.appendingPathComponent("old-\(UUID().uuidString).m3index").path
        try FileManager.default.copyItem(atPath: fixture("indexes/pre-identity-v2.sqlite"), toPath: path)
        return path
    }

    func recordedModelID(_ path: String) throws -> String {
        try IndexStore(path: path, readOnly: true).settings().modelID
    }

    func testPreV2IndexIsAcceptedReadOnlyAndUpgradedOnItsFirstWritableOpen() throws {
        let model = try BGEM3(folder: tinyModel)
        let path = try oldIndex()
        XCTAssertEqual(try recordedModelID(path), legacyID)
        let untouched = try Data(contentsOf: URL(fileURLWithPath: path))

        // Read-only: accepted as it is, nothing written.
        let reader = try SearchIndex(path: path, model: model, options: .existing(readOnly: true))
        XCTAssertEqual(reader.identityUpgrade, .pendingWritableOpen)
        XCTAssertEqual(reader.settings.modelID, legacyID)
        XCTAssertEqual(reader.documentCount, 3)
        let before = try reader.search("context managers", options: SearchOptions(k: 3))
        XCTAssertEqual(before.results.first?.path, "docs/a.txt")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), untouched)

        // Writable: the record is replaced, once.
        let writer = try SearchIndex(path: path, model: model, options: .existing())
        XCTAssertEqual(writer.identityUpgrade, .upgraded)
        XCTAssertEqual(writer.settings.modelID, model.identity)
        XCTAssertEqual(try recordedModelID(path), model.identity)
        let after = try writer.search("context managers", options: SearchOptions(k: 3))
        XCTAssertEqual(after.results.map(\.path), before.results.map(\.path))
        XCTAssertEqual(after.results.map(\.score), before.results.map(\.score))
        try writer.add([DocumentInput(id: "new.txt", text: "Written after the upgrade.")])
        XCTAssertEqual(writer.documentCount, 4)

        let again = try SearchIndex(path: path, model: model, options: .existing())
        XCTAssertNil(again.identityUpgrade)
        XCTAssertEqual(again.documentCount, 4)
        XCTAssertNil(try SearchIndex(path: path, model: model, options: .existing(readOnly: true)).identityUpgrade)
    }

    /// The old index's vectors are what the current model computes for its chunk texts: an
    /// index built now from the same texts with the same settings scores the same.
    func testPreV2IndexScoresLikeOneBuiltNow() throws {
        let model = try BGEM3(folder: tinyModel)
        let old = try SearchIndex(path: try oldIndex(), model: model, options: .existing())
        let fresh = try SearchIndex(path: dir.appendingPathComponent("fresh.m3index").path, model: model,
                                    options: IndexOptions(maxLength: 32, overlap: 4, colbertStorage: .float16, denseStorage: .f32))
        let texts = try old.store.chunkTexts(ids: old.store.chunkIDs())
        var inputs: [DocumentInput] = []
        for document in try old.store.documents() {
            let ids = try old.store.chunkIDs(documentID: document.id)
            XCTAssertEqual(ids.count, 1, document.path)
            inputs.append(DocumentInput(id: document.path, text: try XCTUnwrap(texts[ids[0]])))
        }
        try fresh.add(inputs)
        for query in ["context managers", "SQLite file", "dense sparse ColBERT"] {
            let a = try old.search(query, options: SearchOptions(k: 3)), b = try fresh.search(query, options: SearchOptions(k: 3))
            XCTAssertEqual(a.results.map(\.path), b.results.map(\.path), query)
            for (x, y) in zip(a.results, b.results) { XCTAssertEqual(x.score, y.score, accuracy: 1e-5, query) }
        }
    }

    /// A model whose first-generation identity differs (an edited config.json) is another
    /// model: refused, read-only or not, and its record is left as it was.
    func testPreV2IndexOfAnotherModelIsRefused() throws {
        let folder = dir.appendingPathComponent("edited-model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: tinyModel) {
            let source = URL(fileURLWithPath: tinyModel).appendingPathComponent(name).resolvingSymlinksInPath()
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name), withDestinationURL: source)
        }
        let config = folder.appendingPathComponent("config.json")
        let text = try Data(contentsOf: config) + Data("\n".utf8)   // same numbers, other bytes
        try FileManager.default.removeItem(at: config)
        try text.write(to: config)
        let edited = try BGEM3(folder: folder.path)
        let path = try oldIndex()
        for readOnly in [true, false] {
            XCTAssertThrowsError(try SearchIndex(path: path, model: edited, options: .existing(readOnly: readOnly))) { error in
                guard let e = error as? M3SearchError, case StoreError.incompatible(_, let detail)? = e.underlying else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual(e.kind, .incompatible)
                XCTAssertTrue(detail.contains("model \(legacyID)"), detail)
            }
        }
        XCTAssertEqual(try recordedModelID(path), legacyID)
    }

    /// `m3search query` says once that it upgraded the index.
    func testCommandLineNotesTheUpgradeOnce() throws {
        let path = try oldIndex()
        let first = try runM3Search(["query", "context managers", "--index", path, "--model", tinyModel], stdin: "")
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("docs/a.txt"), first.stdout)
        XCTAssertTrue(first.stderr.contains("note: upgraded the index's model identity to v2"), first.stderr)
        let second = try runM3Search(["query", "context managers", "--index", path, "--model", tinyModel], stdin: "")
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(second.stdout, first.stdout)
        XCTAssertFalse(second.stderr.contains("upgraded"), second.stderr)
    }

    /// An export of a pre-v2 index carries the first-generation identity in its header:
    /// `import` accepts it for the same model (the new index records identity v2) and
    /// refuses it for another.
    func testImportAcceptsAPreV2ExportOfTheSameModelOnly() throws {
        let export = dir.appendingPathComponent("old.jsonl").path
        let exported = try runM3Search(["export", "--index", try oldIndex(), "--out", export], stdin: "")
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let header = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n")[0]
        XCTAssertTrue(header.contains("\"modelID\":\"\(legacyID)\""), String(header))

        let target = dir.appendingPathComponent("imported.m3index").path
        let run = try runM3Search(["import", export, "--index", target, "--model", tinyModel], stdin: "")
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("imported 3 documents, 3 chunks"), run.stdout)
        XCTAssertTrue(run.stderr.contains("model identity of m3search before v2"), run.stderr)
        let model = try BGEM3(folder: tinyModel)
        let imported = try SearchIndex(path: target, model: model, options: .existing())
        XCTAssertNil(imported.identityUpgrade)
        XCTAssertEqual(imported.settings.modelID, model.identity)
        XCTAssertEqual(try imported.search("context managers", options: SearchOptions(k: 1)).results.first?.path, "docs/a.txt")

        let other = try runM3Search(["import", export, "--index", dir.appendingPathComponent("other.m3index").path,
                                     "--model", fixture("models/tiny-bin")], stdin: "")
        XCTAssertEqual(other.status, 65, other.stderr)
        XCTAssertTrue(other.stderr.contains("was exported from an index of model \(legacyID)"), other.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("other.m3index").path))
    }
}
