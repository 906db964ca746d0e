import Foundation
@testable import M3Search
@testable import M3Store
import XCTest

/// PDF, DOCX, ODT and EPUB files through `indexFiles`: page and section metadata on chunks
/// and hits, hostile files skipped by name without stopping the run, and format 2 indexes
/// migrated to the chunk metadata column.
final class DocumentIngestionTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-documents-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("docs"), withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func openIndex() throws -> SearchIndex {
        try SearchIndex(path: dir.appendingPathComponent("i.m3index").path, model: try BGEM3(folder: fixture("models/tiny-safetensors")),
                        options: IndexOptions(maxLength: 8, overlap: 1))
    }

    func copy(_ names: [String]) throws {
        for name in names {
            try FileManager.default.copyItem(atPath: fixture("documents/" + name), toPath: dir.appendingPathComponent("docs/" + name).path)
        }
    }

    func testDocumentsIndexWithLocationsAndHostileFilesAreSkipped() throws {
        let good = ["sample.pdf", "sample.docx", "sample.odt", "sample.epub"]
        let hostile = ["encrypted.pdf", "notext.pdf", "truncated.docx", "bomb.docx", "laughs.docx", "deep.docx",
                       "malformed.odt", "wrongext.epub"]
        try copy(good + hostile)
        let index = try openIndex()
        let docs = dir.appendingPathComponent("docs").path
        let s = try index.indexFiles([docs])
        XCTAssertEqual(s.indexed, good.count)
        XCTAssertEqual(s.skipped, hostile.count)
        for name in hostile { XCTAssertTrue(s.warnings.contains { $0.hasPrefix(docs + "/" + name + ": skipped") }, name) }
        XCTAssertTrue(s.warnings.contains { $0.contains("encrypted.pdf") && $0.contains("encrypted") })

        // Every chunk of a structured file has a location; a PDF chunk's page is the page its
        // first character is on, computed from the generator's page texts (joined by blank lines).
        let pages = ["First page about retrieval", "Second page about ranking", "Third page about evaluation"]
        var pageStarts: [Int] = [], offset = 0
        for p in pages { pageStarts.append(offset); offset += p.unicodeScalars.count + 2 }
        var pagesSeen = Set<String>()
        try index.store.read {
            try index.store.forEachChunkWithDocument { document, row in
                let metadata = row.chunk.metadata.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }
                XCTAssertNotNil(metadata, "\(document.path) chunk \(row.chunk.ordinal)")
                if document.path.hasSuffix(".pdf") {
                    let expected = pageStarts.lastIndex { $0 <= row.chunk.charStart }.map { String($0 + 1) }
                    XCTAssertEqual(metadata?["page"], expected, row.chunk.text)
                    pagesSeen.insert(metadata?["page"] ?? "")
                }
            }
        }
        XCTAssertGreaterThan(pagesSeen.count, 1, "chunks should start on more than one page")
        // Hits return the chunk's location.
        let hits = try index.search("Second page about ranking", options: SearchOptions(k: 100)).results
        let pdfHits = hits.filter { $0.path.hasSuffix("sample.pdf") }
        XCTAssertFalse(pdfHits.isEmpty)
        for hit in pdfHits {
            XCTAssertEqual(hit.metadata?["page"], pageStarts.lastIndex { $0 <= hit.charRange.lowerBound }.map { String($0 + 1) })
        }
        XCTAssertTrue(hits.contains { $0.metadata?["section"] != nil })

        // Unchanged files: nothing encoded again; hostile ones are skipped again, quietly counted.
        let again = try index.indexFiles([docs])
        XCTAssertEqual([again.indexed, again.unchanged], [0, good.count])
    }

    /// A format-2 file (no chunk metadata column) opens read-only as it is and is migrated
    /// in place by a writer, keeping its rows.
    /// The binary starts without libpoppler-cpp (the dynamic linker's own list of what it
    /// loads, LD_DEBUG=libs, names none), reads PDFs by loading it at the first one, and when
    /// it cannot be loaded skips each PDF with "PDF support unavailable" while the other
    /// files are indexed, instead of failing to start or crashing.
    func testPopplerLoadsAtTheFirstPDFAndItsAbsenceSkipsOnlyPDFs() throws {
        #if os(Linux)
        let version = try runM3SearchWith(["--version"], environment: ["LD_DEBUG": "libs"])
        XCTAssertEqual(version.status, 0, version.stderr)
        XCTAssertTrue(version.stderr.contains("libswiftCore"), "LD_DEBUG printed nothing: \(version.stderr.prefix(500))")
        XCTAssertFalse(version.stderr.contains("libpoppler"), "poppler is loaded at start")
        #endif
        try copy(["sample.pdf", "sample.docx"])
        let docs = dir.appendingPathComponent("docs").path
        let model = fixture("models/tiny-safetensors")
        let arguments = ["index", docs, "--model", model, "--max-length", "32", "--overlap", "4"]

        let missing = try runM3SearchWith(arguments + ["--index", dir.appendingPathComponent("missing.m3index").path],
                                          environment: ["M3SEARCH_POPPLER_LIBRARY": "/nonexistent/libpoppler-cpp.so.0"])
        XCTAssertEqual(missing.status, 0, missing.stderr)
        XCTAssertTrue(missing.stdout.contains("indexed 1,"), missing.stdout)
        let warning = (missing.stdout + missing.stderr).split(separator: "\n").first { $0.contains("sample.pdf") }
        XCTAssertTrue(warning?.contains("PDF support unavailable") == true, missing.stdout + missing.stderr)
        XCTAssertTrue(warning?.contains("/nonexistent/libpoppler-cpp.so.0") == true, String(warning ?? ""))

        let present = try runM3SearchWith(arguments + ["--index", dir.appendingPathComponent("present.m3index").path])
        XCTAssertEqual(present.status, 0, present.stderr)
        XCTAssertTrue(present.stdout.contains("indexed 2,"), present.stdout)
        let hits = try runM3SearchWith(["query", "Second page about ranking", "--index", dir.appendingPathComponent("present.m3index").path,
                                        "--model", model, "--json", "--k", "20"])
        XCTAssertTrue(hits.stdout.contains("sample.pdf"), hits.stdout)
    }

    func testFormat2IndexMigrates() throws {
        let path = dir.appendingPathComponent("old.m3index").path
        do {
            let store = try IndexStore(path: path, createWith: StoredSettings(modelID: "m", dimension: 4))
            let id = try store.insertDocument(path: "a.txt", size: 1, mtime: 0, contentHash: "h", metadata: nil)
            _ = try store.insertChunk(documentID: id, ordinal: 0, charStart: 0, charEnd: 1, tokenCount: 3, text: "a",
                                      dense: Data(), sparse: Data(), colbert: Data())
            // Back to format 2, as an older m3search wrote it: no chunk metadata column (nor
            // the format-4 graph image table).
            try store.setMeta("format_version", "2")
            try store.db.execute("ALTER TABLE chunks DROP COLUMN metadata; DROP TABLE graph_image;")
        }
        do {
            let reader = try IndexStore(path: path, readOnly: true)
            var texts: [String] = []
            try reader.forEachChunkWithDocument { _, row in texts.append(row.chunk.text); XCTAssertNil(row.chunk.metadata) }
            XCTAssertEqual(texts, ["a"])
            XCTAssertEqual(try reader.meta("format_version"), "2")
        }
        let writer = try IndexStore(path: path)
        XCTAssertEqual(try writer.meta("format_version"), String(IndexStore.formatVersion))
        let id = try writer.insertDocument(path: "b.pdf", size: 1, mtime: 0, contentHash: "h", metadata: nil)
        let chunk = try writer.insertChunk(documentID: id, ordinal: 0, charStart: 0, charEnd: 1, tokenCount: 3, text: "b",
                                           dense: Data(), sparse: Data(), colbert: Data(), metadata: #"{"page":"1"}"#)
        XCTAssertEqual(try writer.chunk(id: chunk)?.metadata, #"{"page":"1"}"#)
        XCTAssertEqual(try writer.counts().chunks, 2)
    }
}
