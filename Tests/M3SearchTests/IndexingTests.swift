import Foundation
@testable import M3Search
import M3Store
import XCTest

/// Incremental indexing, interrupted runs, foreign models and bad inputs.
final class IndexingTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-indexing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws {
        let url = dir.appendingPathComponent("docs/\(name)")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    var docs: String { dir.appendingPathComponent("docs").path }

    func openIndex(model: String = "models/tiny-safetensors") throws -> SearchIndex {
        try SearchIndex(path: dir.appendingPathComponent("i.m3index").path, model: try BGEM3(folder: fixture(model)), options: IndexOptions(maxLength: 32, overlap: 4))
    }

    func testIncrementalRunsFollowEditsAddsAndDeletes() throws {
        try write("a.txt", "Apples grow on trees in the orchard near the river.")
        try write("b.md", "# Bicycles\n\nA bicycle has two wheels and pedals.")
        try write("c.rst", "Cats\n====\n\nCats sleep most of the day.")
        var index = try openIndex()
        var s = try index.indexFiles([docs])
        XCTAssertEqual([s.indexed, s.unchanged, s.removed], [3, 0, 0])
        // The run ends with the write-ahead log folded into the file and truncated.
        let wal = dir.appendingPathComponent("i.m3index-wal").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: wal))
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: wal)[.size] as? NSNumber)?.intValue, 0)

        // Unchanged tree: nothing is encoded.
        s = try index.indexFiles([docs])
        XCTAssertEqual([s.indexed, s.unchanged, s.chunks], [0, 3, 0])

        // Edit, add, delete.
        Thread.sleep(forTimeInterval: 0.01)
        try write("a.txt", "Submarines dive deep under the ocean surface.")
        try write("d.txt", "Dragons are creatures of myth and legend.")
        try FileManager.default.removeItem(atPath: docs + "/c.rst")
        s = try index.indexFiles([docs])
        XCTAssertEqual([s.indexed, s.unchanged, s.removed], [2, 1, 1])
        let paths = Set(try index.store.documents().map(\.path))
        XCTAssertEqual(paths, [docs + "/a.txt", docs + "/b.md", docs + "/d.txt"])
        let top = try index.search("Submarines dive deep under the ocean surface.", options: SearchOptions(k: 1)).results
        XCTAssertEqual(top.first?.path, docs + "/a.txt")
        XCTAssertTrue(top.first?.text.contains("Submarines") ?? false)
        XCTAssertFalse(try index.search("Apples orchard", options: SearchOptions(k: 10)).results.contains { $0.text.contains("Apples") })

        // Reopened from the file, the index agrees.
        index = try openIndex()
        XCTAssertEqual(index.documentCount, 3)
        XCTAssertNoThrow(try index.hnsw.checkIntegrity())
        XCTAssertEqual(try index.store.integrityCheck(), ["ok"])
        XCTAssertEqual(try index.check().problems, [])
    }

    /// `check` notices a chunk whose stored sparse vector disagrees with the postings.
    func testCheckReportsInconsistentPostings() throws {
        try write("a.txt", "Rivers flow to the sea through valleys and plains.")
        let index = try openIndex()
        _ = try index.indexFiles([docs])
        XCTAssertTrue(try index.check().isSound)
        try SQLiteConnection(path: index.path, mode: .readWrite)
            // Without the row's checksum (which would catch it first): the cross-check itself.
            .execute("""
                DELETE FROM chunk_checksums WHERE chunk_id = (SELECT min(id) FROM chunks);
                UPDATE chunks SET sparse = X'0500000000008040' WHERE id = (SELECT min(id) FROM chunks)
                """)
        let report = try index.check()
        XCTAssertFalse(report.isSound)
        XCTAssertTrue(report.problems.contains { $0.contains("posting") }, "\(report.problems)")
    }

    func testSkipsUnsupportedBinaryAndEmptyFilesAndWarnsOnInvalidUTF8() throws {
        try write("ok.txt", "Plain text about rivers.")
        try write("empty.txt", "")
        try write("image.png", "\u{89}PNG not really")
        let binary = Data([0x68, 0x69, 0x00, 0x01, 0x02])
        try binary.write(to: dir.appendingPathComponent("docs/blob.txt"))
        try Data([0x63, 0x61, 0x66, 0xC3, 0x28, 0x20, 0x6F, 0x6B]).write(to: dir.appendingPathComponent("docs/latin.txt"))
        let index = try openIndex()
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.indexed, 2)   // ok.txt and latin.txt
        XCTAssertEqual(s.skipped, 3)   // empty, png, binary
        XCTAssertEqual(s.failed, 0)
        XCTAssertTrue(s.warnings.contains { $0.contains("latin.txt") && $0.contains("invalid UTF-8") })
        XCTAssertEqual(s.skippedByReason["binary"], 1)
        XCTAssertEqual(s.skippedByReason["empty"], 1)
        XCTAssertEqual(s.skippedByReason["unsupported type"], 1)
    }

    func testEmptyFolderAndEmptyIndex() throws {
        try FileManager.default.createDirectory(atPath: docs, withIntermediateDirectories: true)
        let index = try openIndex()
        let s = try index.indexFiles([docs])
        XCTAssertEqual([s.indexed, s.skipped, s.failed], [0, 0, 0])
        XCTAssertThrowsError(try index.search("anything")) { error in
            guard let e = error as? M3SearchError, e.kind == .emptyIndex else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try index.indexFiles([dir.appendingPathComponent("nope").path]))
    }

    func testIndexBuiltWithAnotherModelIsRefused() throws {
        try write("a.txt", "Some text.")
        _ = try openIndex().indexFiles([docs])
        XCTAssertThrowsError(try openIndex(model: "models/tiny-bin")) { error in
            guard let e = error as? M3SearchError, e.kind == .incompatible, case StoreError.incompatible? = e.underlying else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue("\(error)".contains("model"))
        }
    }

    func testLibraryDocumentsWithMetadata() throws {
        let index = try openIndex()
        try index.add([DocumentInput(id: "note-1", text: "The lighthouse keeper lit the lamp at dusk.", metadata: ["author": "ann"]),
                       DocumentInput(id: "note-2", text: "Volcanoes erupt with lava and ash.")])
        var top = try index.search("lighthouse lamp", options: SearchOptions(k: 1)).results
        XCTAssertEqual(top.first?.path, "note-1")
        XCTAssertEqual(top.first?.metadata, ["author": "ann"])
        try index.add([DocumentInput(id: "note-1", text: "Glaciers carve valleys over millennia.")])
        XCTAssertEqual(index.documentCount, 2)
        top = try index.search("glaciers valleys", options: SearchOptions(k: 1)).results
        XCTAssertEqual(top.first?.path, "note-1")
        XCTAssertEqual(try index.remove(["note-1", "missing"]), 1)
        XCTAssertEqual(index.documentCount, 1)
    }

    /// Searches from several tasks while one task writes: every search succeeds.
    func testConcurrentSearchesDuringWrites() async throws {
        let index = try openIndex()
        try await index.add((0..<5).map { DocumentInput(id: "seed-\($0)", text: "Seed document number \($0) about harbours and ships.") })
        try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask {
                for i in 0..<20 { try await index.add([DocumentInput(id: "w-\(i)", text: "Written while searching, item \(i), about trains.")]) }
                return 0
            }
            for _ in 0..<4 {
                group.addTask {
                    var n = 0
                    for _ in 0..<15 { n += try await index.search("ships in the harbour").results.count }
                    return n
                }
            }
            for try await n in group { XCTAssertGreaterThanOrEqual(n, 0) }
        }
        XCTAssertEqual(index.documentCount, 25)
        XCTAssertNoThrow(try index.hnsw.checkIntegrity())
    }

    /// A run killed mid-way keeps every committed document; the next run completes the job.
    func testKilledRunKeepsCommittedDocumentsAndResumes() throws {
        let corpus = fixture("corpus")
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { $0.hasSuffix(".txt") }.sorted()
        for name in names { try FileManager.default.copyItem(atPath: corpus + "/" + name, toPath: ensureDocs() + "/" + name) }
        let indexPath = dir.appendingPathComponent("killed.m3index").path
        let process = Process()
        process.executableURL = m3searchBinary
        process.arguments = ["index", docs, "--index", indexPath, "--model", fixture("models/tiny-safetensors"),
                             "--max-length", "32", "--overlap", "4", "--batch", "1"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until some documents are committed, then kill without warning.
        let deadline = Date().addingTimeInterval(60)
        var committed = 0
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: indexPath),
               let store = try? IndexStore(path: indexPath, readOnly: true), let c = try? store.counts().documents, c >= 3 {
                committed = c
                break
            }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertGreaterThanOrEqual(committed, 3, "the run committed nothing before the deadline")

        let model = try BGEM3(folder: fixture("models/tiny-safetensors"))
        let afterKill = try SearchIndex(path: indexPath, model: model, options: .existing())
        XCTAssertEqual(try afterKill.store.integrityCheck(), ["ok"])
        XCTAssertEqual(try afterKill.check().problems, [])
        XCTAssertNoThrow(try afterKill.hnsw.checkIntegrity())
        let kept = try afterKill.store.documents()
        XCTAssertGreaterThanOrEqual(kept.count, committed)
        // Every kept document is complete and searchable.
        for doc in kept.prefix(3) {
            let text = try String(contentsOfFile: doc.path, encoding: .utf8)
            let first = String(text.prefix(80))
            let hits = try afterKill.search(first, options: SearchOptions(k: 5, mode: .sparse)).results
            XCTAssertTrue(hits.contains { $0.path == doc.path }, "\(doc.path) not found after the kill")
        }
        let s = try afterKill.indexFiles([docs], selection: FileSelection(batchDocuments: 8))
        XCTAssertEqual(s.unchanged, kept.count)
        XCTAssertEqual(s.indexed, names.count - kept.count)
        XCTAssertEqual(afterKill.documentCount, names.count)
    }

    private func ensureDocs() -> String {
        try? FileManager.default.createDirectory(atPath: docs, withIntermediateDirectories: true)
        return docs
    }

    /// The README's library snippet, compiled and run.
    func testReadmeLibrarySnippet() throws {
        let path = dir.appendingPathComponent("notes.m3index").path
        // --- README snippet (keep in sync) ---
        let model = try BGEM3(folder: BGEM3.locate(explicit: fixture("models/tiny-safetensors")))
        let index = try SearchIndex(path: path, model: model)
        try index.add([DocumentInput(id: "a.md", text: "BGE-M3 is a multilingual embedding model.", metadata: ["lang": "en"]),
                       DocumentInput(id: "b.md", text: "SQLite stores the whole index in one file.")])
        let report = try index.search("multilingual embeddings", options: SearchOptions(k: 5, weights: FusionWeights(dense: 0.4, sparse: 0.3, colbert: 0.3)))
        for r in report.results {
            print(r.rank, r.path, r.score, r.dense ?? 0, r.sparse ?? 0, r.colbert ?? 0)
        }
        // --- end of snippet ---
        XCTAssertEqual(report.results.count, 2)
    }
}
