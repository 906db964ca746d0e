import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Canonical document ids (issue 14 item 2): one document per file however it is reached,
/// ids given through the library kept as given, and older indexes with duplicates merged.
final class DocumentIDTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-ids-\(UUID().uuidString)")
        let notes = dir.appendingPathComponent("real/notes")
        try FileManager.default.createDirectory(at: notes.appendingPathComponent("deep"), withIntermediateDirectories: true)
        let texts = ["a.txt": "Lighthouses guide ships along the rocky coast.", "b.md": "# Volcanoes\nLava flows downhill.",
                     "deep/c.txt": "Glaciers carve valleys over thousands of years."]
        for (name, text) in texts { try Data(text.utf8).write(to: notes.appendingPathComponent(name)) }
        // A symlinked parent: link → real.
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link").path, withDestinationPath: "real")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var canonicalNotes: String { Ingestion.canonicalPath(dir.appendingPathComponent("real/notes").path)! }

    /// `notes`, `./notes/`, the absolute path and the symlinked parent's path: 3 documents,
    /// through the command line (run in the folder, so the relative spellings mean it).
    func testOneFolderUnderManySpellingsIsOneSetOfDocuments() throws {
        let index = dir.appendingPathComponent("i.m3index").path
        let model = fixture("models/tiny-safetensors")
        let real = dir.appendingPathComponent("real")
        for spelling in ["notes", "./notes/", real.path + "/notes", dir.appendingPathComponent("link/notes").path, "../notes/."] {
            let run = try runM3Search(["index", spelling, "--index", index, "--model", model, "--max-length", "32", "--overlap", "4"], stdin: "",
                                      currentDirectory: spelling.hasPrefix("../") ? real.appendingPathComponent("notes") : real)
            XCTAssertEqual(run.status, 0, "\(spelling): \(run.stderr)")
        }
        let opened = try SearchIndex(path: index, model: try SearchEngineTests.model())
        XCTAssertEqual(opened.documentCount, 3)
        let paths = Set(try opened.store.documents().map(\.path))
        XCTAssertEqual(paths, [canonicalNotes + "/a.txt", canonicalNotes + "/b.md", canonicalNotes + "/deep/c.txt"])
        let hits = try opened.search("lighthouses", options: SearchOptions(k: 10)).results
        XCTAssertEqual(hits.count, 3, "one hit per file")
        // A single file, through the symlinked parent, is the same document as well.
        _ = try opened.indexFiles([dir.appendingPathComponent("link/notes/./deep/../a.txt").path])
        XCTAssertEqual(opened.documentCount, 3)
    }

    /// Ids given to `add` are kept as given, even when they look like paths.
    func testLibraryIdsAreKeptAsGiven() throws {
        let index = try SearchIndex(path: dir.appendingPathComponent("l.m3index").path, model: try SearchEngineTests.model(),
                                    options: IndexOptions(maxLength: 32, overlap: 4))
        let ids = ["./notes/a.txt", "notes/a.txt", "notes//a.txt", dir.appendingPathComponent("link/notes/a.txt").path, "urn:x:1"]
        try index.add(ids.map { DocumentInput(id: $0, text: "a text about \($0)") })
        XCTAssertEqual(Set(try index.store.documents().map(\.path)), Set(ids))
        // Reopening (the migration runs on an index that never ran it) keeps them too: they are
        // not files as indexed (their size and mtime are not the files').
        try index.store.setMeta(IndexStore.documentIDsKey, "")
        let reopened = try SearchIndex(path: index.path, model: index.model)
        XCTAssertEqual(Set(try reopened.store.documents().map(\.path)), Set(ids))
    }

    /// An index written before ids were canonical, holding the folder under three spellings
    /// (9 documents for 3 files, inserted raw as the old code stored them), migrates on its
    /// first writable open: 3 documents with canonical ids, the newest copy kept, nothing
    /// left of the others in the graph or postings (`check` is clean), and one hit per file.
    func testOldIndexWithDuplicatesMigratesInPlace() throws {
        let path = dir.appendingPathComponent("old.m3index").path
        let model = try SearchEngineTests.model()
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir.appendingPathComponent("real").path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        var newest: [String: String] = [:]  // canonical id → the spelling inserted last
        do {
            let index = try SearchIndex(path: path, model: model, options: IndexOptions(maxLength: 32, overlap: 4))
            let ingestion = index.ingestion
            for spelling in ["notes", "./notes", dir.appendingPathComponent("link/notes").path] {
                var prepared: [PreparedDocument] = []
                for name in ["a.txt", "b.md", "deep/c.txt"] {
                    let file = spelling + "/" + name
                    guard case .success(let doc) = DocumentReader.read(path: file, kind: DocumentKind.of(path: file)!, maxBytes: 1 << 20) else {
                        return XCTFail(file)
                    }
                    prepared.append(try ingestion.prepare(path: file, text: doc.text, size: doc.size, mtime: doc.mtime,
                                                          contentHash: doc.contentHash, metadata: nil))
                    newest[canonicalNotes + "/" + name] = file
                }
                try index.writer.add(prepared)
            }
            // As an index before the migration existed: no record of canonical ids.
            try index.store.setMeta(IndexStore.documentIDsKey, "")
            XCTAssertEqual(index.documentCount, 9)
        }
        // A read-only open changes nothing.
        let readOnly = try SearchIndex(path: path, model: model, options: IndexOptions(readOnly: true))
        XCTAssertEqual(readOnly.documentCount, 9)

        let index = try SearchIndex(path: path, model: model)
        XCTAssertEqual(index.documentCount, 3)
        let docs = try index.store.documents()
        XCTAssertEqual(Set(docs.map(\.path)), Set(newest.keys))
        let chunks = try index.store.counts().chunks
        XCTAssertEqual(index.chunkCount, chunks, "graph nodes = chunk rows")
        let report = try index.check()
        XCTAssertTrue(report.problems.isEmpty, "\(report.problems)")
        XCTAssertEqual(try index.search("glaciers", options: SearchOptions(k: 10)).results.count, 3)
        // The kept copy is the newest (the last inserted), whose chunk ids are the highest.
        let minKeptChunk = try index.store.chunkIDs().min() ?? 0
        XCTAssertGreaterThan(minKeptChunk, 2 * Int64(chunks), "the copies inserted first were removed")
        // Reindexing from any spelling finds them unchanged.
        let again = try index.indexFiles(["notes"])
        XCTAssertEqual(again.unchanged, 3)
        XCTAssertEqual(again.indexed, 0)
        XCTAssertEqual(index.documentCount, 3)
    }
}
