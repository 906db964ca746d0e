import Foundation
import M3Index
import M3Model
@testable import M3Search
@testable import M3Store
import XCTest

/// `DenseCandidates.exactScan` (what `m3search query` opens with): no graph, each search
/// scans the image's rows. Its dense candidates must be the brute-force top n of the graph's
/// own exact scores, and its answers those of the graph searched exhaustively (efSearch at
/// least the chunk count), in every mode, with filters; documents read on demand must show
/// as the loaded table does. No current image falls back to the graph; damage and a file
/// changed after the open are errors, never wrong answers.
final class ExactScanTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-scan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A checkpointed copy of the corpus index (it holds a current image).
    func corpusCopy(_ name: String) throws -> String {
        let index = try SearchEngineTests.corpusIndex()
        try index.checkpoint()
        let path = dir.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: SearchEngineTests.shared!.1, toPath: path)
        return path
    }

    func open(_ path: String, scan: Bool, readOnly: Bool = true) throws -> SearchIndex {
        var options = IndexOptions.existing(readOnly: readOnly)
        if scan { options.denseCandidates = .exactScan }
        return try SearchIndex(path: path, model: try SearchEngineTests.model(), options: options)
    }

    func encoded(_ index: SearchIndex, _ q: String) throws -> Embedding {
        try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
    }

    /// Rewrites the file's image with segments of `slots` slots (the writer's are 8,192: one
    /// segment for this corpus), so that searches split the segments between two threads.
    func reimage(_ path: String, segmentSlots slots: Int) throws {
        let hnsw = try open(path, scan: false).hnsw
        let store = try IndexStore(path: path)
        try store.write {
            try store.deleteGraphImageParts(from: 0)
            let manifest = hnsw.imageManifest(commit: try store.commitCount(), segmentSlots: slots)
            try store.putGraphImagePart(0, manifest.bytes, known: [:])
            for k in 0 ..< manifest.segments {
                let part = hnsw.imageSegment(k, segmentSlots: slots)
                try store.putGraphImagePart(2 * k + 1, part.links, known: [:])
                try store.putGraphImagePart(2 * k + 2, part.rows, known: [:])
            }
        }
    }

    func testScanAnswersAsTheGraphSearchedExhaustively() throws {
        for segmentSlots in [nil, 37] {
            let path = try corpusCopy("scan-\(segmentSlots ?? 0).m3index")
            if let segmentSlots { try reimage(path, segmentSlots: segmentSlots) }
            try assertScanAnswersAsTheGraph(path)
        }
    }

    func assertScanAnswersAsTheGraph(_ path: String) throws {
        let scan = try open(path, scan: true), graph = try open(path, scan: false)
        XCTAssertTrue(scan.openTimings.graphSource.hasPrefix("image, scanned"), scan.openTimings.graphSource)
        XCTAssertEqual(graph.openTimings.graphSource, "image")
        XCTAssertEqual(scan.chunkCount, graph.chunkCount)
        XCTAssertEqual(scan.documentCount, graph.documentCount)
        let all = graph.chunkCount
        for q in Array(SearchEngineTests.queries.prefix(10)) + ["exception handling with try and finally"] {
            let e = try encoded(scan, q)
            for mode in SearchOptions.Mode.allCases {
                for grouped in [true, false] {
                    for candidates in [5, 100] {
                        let options = SearchOptions(k: 10, mode: mode, candidates: candidates, groupByDocument: grouped)
                        var exhaustive = options
                        exhaustive.efSearch = all
                        let got = try scan.search(encoded: e, options: options)
                        XCTAssertEqual(got.results, try graph.search(encoded: e, options: exhaustive).results,
                                       "\(q) \(mode) grouped \(grouped) candidates \(candidates)")
                    }
                }
            }
        }
    }

    /// The dense candidates are the brute-force top n by the graph's exact score, ties by id.
    func testDenseCandidatesAreTheBruteForceTopN() throws {
        let path = try corpusCopy("brute.m3index")
        let scan = try open(path, scan: true), graph = try open(path, scan: false)
        let hnsw = graph.hnsw
        let ids = try graph.reader.withSnapshot { try $0.stores[0].chunkIDs() }
        XCTAssertEqual(ids.count, graph.chunkCount)
        for q in SearchEngineTests.queries.prefix(12) {
            let e = try encoded(scan, q)
            let dense = try XCTUnwrap(e.dense)
            let expected = dense.withUnsafeBufferPointer { qp in
                ids.map { IndexHit(id: $0, score: hnsw.score(qp, id: $0)!) }.sorted(by: IndexHit.ranksBefore).prefix(7).map(\.id)
            }
            let found = try scan.reader.withSnapshot { snapshot in
                try scan.reader.candidates(snapshot, for: e, n: 7, efSearch: nil, fromGraph: true, fromPostings: true)
            }
            XCTAssertEqual(found.graph, expected, q)
            // Every candidate's vector came with the scan, as the graph holds it.
            for id in Set(found.graph).union(found.postings) { XCTAssertEqual(found.scanned[id], hnsw.vector(forID: id), "\(q) \(id)") }
        }
    }

    func testFiltersScanOnlyTheMatchingChunks() throws {
        let path = try corpusCopy("filter.m3index")
        let scan = try open(path, scan: true), graph = try open(path, scan: false)
        let paths = try graph.reader.withSnapshot { try $0.stores[0].documents().map(\.path) }.sorted()
        let few = SearchFilter(paths: Array(paths.prefix(2)))     // fewer chunks than candidates
        let many = SearchFilter(paths: paths.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        for q in SearchEngineTests.queries.prefix(6) {
            let e = try encoded(scan, q)
            for filter in [few, many] {
                for mode in SearchOptions.Mode.allCases {
                    let options = SearchOptions(k: 10, mode: mode, candidates: 20, filter: filter)
                    var exhaustive = options
                    exhaustive.efSearch = graph.chunkCount
                    let got = try scan.search(encoded: e, options: options)
                    let want = try graph.search(encoded: e, options: exhaustive)
                    XCTAssertEqual(got.results, want.results, "\(q) \(mode) \(filter.paths.count) paths")
                    XCTAssertEqual(got.filterChunks, want.filterChunks)
                    XCTAssertTrue(got.results.allSatisfy { filter.paths.contains($0.path) })
                    if mode != .sparse { XCTAssertEqual(got.filterPlan, "exact scan of the matching chunks") }
                }
            }
        }
    }

    func testNeedsReadOnlyAndFallsBackWithoutACurrentImage() throws {
        let path = try corpusCopy("fallback.m3index")
        XCTAssertThrowsError(try open(path, scan: true, readOnly: false)) { error in
            XCTAssertEqual((error as? M3SearchError)?.kind, .invalidArgument, "\(error)")
        }
        let writer = try open(path, scan: false, readOnly: false)
        try writer.add([DocumentInput(id: "added.md", text: "Exception handling with try, except and finally blocks.")])
        let stale = try open(path, scan: true)
        XCTAssertTrue(stale.openTimings.graphSource.contains("stale"), stale.openTimings.graphSource)
        let e = try encoded(stale, "exception handling")
        XCTAssertEqual(try stale.search(encoded: e, options: SearchOptions()).results,
                       try writer.search(encoded: e, options: SearchOptions()).results)
        XCTAssertEqual(stale.chunkCount, writer.chunkCount)
    }

    /// A damaged rows part is found by the search that reads it (checksum), a damaged links
    /// part at open: either way the graph is loaded from the rows and answers as before.
    func testDamageFallsBackToTheGraph() throws {
        let rowsPath = try corpusCopy("rows-damaged.m3index")
        let linksPath = dir.appendingPathComponent("links-damaged.m3index").path
        try FileManager.default.copyItem(atPath: rowsPath, toPath: linksPath)
        for (path, part) in [(rowsPath, 2), (linksPath, 1)] {
            let store = try IndexStore(path: path)
            try store.db.execute("UPDATE graph_image SET data = zeroblob(length(data)) WHERE part = \(part)")
        }
        let reference = try SearchEngineTests.corpusIndex()
        let rows = try open(rowsPath, scan: true)
        XCTAssertTrue(rows.openTimings.graphSource.hasPrefix("image, scanned"))
        for q in SearchEngineTests.queries.prefix(4) {
            XCTAssertEqual(try rows.search(q).results, try reference.search(q).results, q)
        }
        XCTAssertNil(rows.reader.shared.current.scan, "the graph replaced the scan")
        let links = try open(linksPath, scan: true)
        XCTAssertTrue(links.openTimings.graphSource.hasPrefix("rows (graph image damaged"), links.openTimings.graphSource)
        XCTAssertEqual(try links.search("exception handling").results, try reference.search("exception handling").results)
    }

    /// Another process's write and checkpoint after the open: the search loads the graph of
    /// the new commit instead of mixing one commit's state with another's rows.
    func testFileChangedAfterOpenLoadsTheNewGraph() throws {
        let path = try corpusCopy("changed.m3index")
        let scan = try open(path, scan: true)
        let writer = try open(path, scan: false, readOnly: false)
        try writer.add([DocumentInput(id: "added.md", text: "Exception handling with try, except and finally blocks.")])
        try writer.checkpoint()
        let e = try encoded(scan, "exception handling")
        let got = try scan.search(encoded: e, options: SearchOptions())
        XCTAssertEqual(got.results, try writer.search(encoded: e, options: SearchOptions()).results)
        XCTAssertEqual(scan.chunkCount, writer.chunkCount)
        XCTAssertEqual(scan.documentCount, writer.documentCount)
        XCTAssertNil(scan.reader.shared.current.scan)
    }
}
