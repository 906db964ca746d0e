import Foundation
import M3Index
@testable import M3Search
import M3Store
import XCTest

/// The search engine on the committed corpus (Python's documentation topics, PSF
/// license) with the tiny fixture model, against exhaustive exact scoring.
final class SearchEngineTests: XCTestCase {
    /// One index over the corpus, shared by the read-only tests (building it takes seconds).
    nonisolated(unsafe) static var shared: (SearchIndex, String)?

    static func corpusIndex() throws -> SearchIndex {
        if let (index, _) = shared { return index }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-corpus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("corpus.m3index").path
        let index = try SearchIndex(path: path, model: try model(), options: IndexOptions(maxLength: 64, overlap: 8))
        let summary = try index.indexFiles([fixture("corpus")])
        XCTAssertEqual(summary.failed, 0)
        shared = (index, path)
        return index
    }

    nonisolated(unsafe) static var loadedModel: BGEM3?
    static func model() throws -> BGEM3 {
        if let loadedModel { return loadedModel }
        let m = try BGEM3(folder: fixture("models/tiny-safetensors"))
        loadedModel = m
        return m
    }

    /// 60 queries: the corpus's topic names as phrases, plus a few questions.
    static let queries: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: fixture("corpus"))) ?? []
        let topics = names.filter { $0 != "LICENSE.md" }.sorted().map {
            ($0 as NSString).deletingPathExtension.replacingOccurrences(of: "-", with: " ")
        }
        return Array(topics.prefix(50)) + [
            "how does the with statement work", "what is a generator expression", "exception handling with try and finally",
            "integer division and modulo", "dictionary keys must be hashable", "global and nonlocal names",
            "how are default argument values evaluated", "slicing a sequence with a step", "string formatting with f-strings",
            "operator precedence of comparisons",
        ]
    }()

    func testCorpusHasEnoughChunks() throws {
        let index = try Self.corpusIndex()
        XCTAssertGreaterThanOrEqual(index.chunkCount, 2000)
        XCTAssertEqual(index.documentCount, 80)
    }

    /// Hybrid top-10 at the default candidate count against exhaustive fused scoring of every chunk.
    func testHybridTop10MatchesExhaustiveScoring() throws {
        let index = try Self.corpusIndex()
        let options = SearchOptions(k: 10, groupByDocument: false)
        var found = 0, total = 0
        for q in Self.queries {
            let e = try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
            let fast = try index.search(encoded: e, options: options).results.map(\.chunkID)
            let exact = try index.exhaustiveSearch(encoded: e, options: options).map(\.chunkID)
            found += Set(fast).intersection(exact).count
            total += exact.count
        }
        let recall = Double(found) / Double(total)
        print("hybrid recall@10 vs exhaustive over \(Self.queries.count) queries: \(recall)")
        XCTAssertGreaterThanOrEqual(Self.queries.count, 50)
        XCTAssertGreaterThanOrEqual(recall, 0.99)
    }

    /// The per-mode scores the engine reports equal the model's reference scorers on the
    /// stored vectors decoded to float32: sparse exactly (same summation order), ColBERT
    /// within float rounding (the MaxSim kernel sums in another order than sgemm); and the
    /// texts returned are the stored chunk texts.
    func testReportedScoresMatchReferenceScorers() throws {
        let index = try Self.corpusIndex()
        let rows = Dictionary(uniqueKeysWithValues: try storedChunks(atPath: index.path).map { ($0.id, $0) })
        for q in Self.queries.prefix(8) {
            let e = try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
            let results = try index.search(encoded: e, options: SearchOptions(k: 10, groupByDocument: false)).results
            XCTAssertFalse(results.isEmpty)
            for r in results {
                let row = try XCTUnwrap(rows[r.chunkID])
                let sv = row.sparse.withUnsafeBytes { VectorCoding.decodeSparse($0) }!
                let cv = row.colbert.withUnsafeBytes { VectorCoding.decodeColBERT($0, dimension: index.settings.dimension,
                                                                                   storage: index.settings.colbertStorage,
                                                                                   codebook: index.colbertCodebook) }!
                XCTAssertEqual(r.sparse, Scores.sparse(e.sparse!, sv), q)
                XCTAssertEqual(Double(r.colbert!), Double(Scores.colbert(e.colbert!, cv)), accuracy: 1e-5, q)
                XCTAssertEqual(r.text, row.text)
            }
        }
    }

    /// The pruned sparse search returns exactly the brute-force top-k, ties included.
    func testSparseTopKEqualsBruteForce() throws {
        let index = try Self.corpusIndex()
        for q in Self.queries {
            let sv = try index.model.encode([q], options: EncodeOptions(outputs: .sparse))[0].sparse!
            let terms = zip(sv.ids, sv.weights).map { (token: $0, weight: $1) }
            for k in [1, 10, 100] {
                let pruned = try index.sparse.search(terms, k: k)
                let brute = try index.sparse.bruteForceSearch(terms, k: k)
                XCTAssertEqual(pruned, brute, "query \(q) k \(k)")
            }
            // And the engine's sparse mode ranks chunks like exhaustive sparse scoring.
            let e = try index.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
            let options = SearchOptions(k: 10, mode: .sparse, groupByDocument: false)
            // (Chunks sharing no token with the query score 0: they are not matches.)
            XCTAssertEqual(try index.search(encoded: e, options: options).results.map(\.chunkID),
                           try index.exhaustiveSearch(encoded: e, options: options).filter { $0.score > 0 }.map(\.chunkID), q)
        }
    }

    /// HNSW at the default efSearch against brute force on the corpus's dense vectors.
    func testHNSWRecallOnCorpusVectors() throws {
        let index = try Self.corpusIndex()
        var brute = try BruteForceIndex(dimension: index.settings.dimension)
        try index.store.forEachDenseVector { id, dense in
            try brute.add(id: id, vector: VectorCoding.decodeDense(dense, dimension: index.settings.dimension,
                                                                   storage: index.settings.denseStorage, unit: true)!)
        }
        var found = 0, total = 0
        for q in Self.queries {
            let v = try index.model.encode([q], options: EncodeOptions(outputs: .dense))[0].dense!
            let approx = try index.hnsw.search(v, k: 10).map(\.id)
            let exact = try brute.search(v, k: 10).map(\.id)
            found += Set(approx).intersection(exact).count
            total += exact.count
        }
        let recall = Double(found) / Double(total)
        print("HNSW recall@10 at efSearch \(index.hnsw.efSearch): \(recall)")
        XCTAssertGreaterThanOrEqual(recall, 0.95)
        XCTAssertNoThrow(try index.hnsw.checkIntegrity())
    }

    /// Reopening loads the stored graph and postings: identical results, no rebuild.
    func testReopenedIndexGivesIdenticalResults() throws {
        let index = try Self.corpusIndex()
        let path = Self.shared!.1
        let reopened = try SearchIndex(path: path, model: try Self.model(), options: .existing(readOnly: true))
        XCTAssertEqual(reopened.chunkCount, index.chunkCount)
        for q in Self.queries.prefix(10) {
            XCTAssertEqual(try reopened.search(q).results, try index.search(q).results)
        }
    }

    /// An opened index derives each chunk's sparse tokens only at its first write
    /// (`SparseIndex.documentTokens`, skipped at open): a removal and a re-add through a
    /// reopened copy must leave what a fresh load of the file holds, and the removed
    /// document must be gone from every mode's results.
    func testWritesThroughReopenedIndexMatchAFreshLoad() throws {
        let index = try Self.corpusIndex()
        try index.checkpoint()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-reopen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("copy.m3index").path
        try FileManager.default.copyItem(atPath: Self.shared!.1, toPath: copy)

        let writer = try SearchIndex(path: copy, model: try Self.model(), options: .existing(readOnly: false))
        let q = Self.queries[0]
        let sparse = SearchOptions(k: 10, mode: .sparse)
        let victim = try XCTUnwrap(try writer.search(q, options: sparse).results.first).path
        XCTAssertEqual(try writer.remove([victim]), 1)
        for mode in [SearchOptions.Mode.sparse, .dense, .hybrid] {
            XCTAssertFalse(try writer.search(q, options: SearchOptions(k: 20, mode: mode)).results.contains { $0.path == victim }, "\(mode)")
        }
        try writer.add([DocumentInput(id: "added.md", text: "Exception handling with try, except and finally blocks.")])
        let fresh = try SearchIndex(path: copy, model: try Self.model(), options: .existing(readOnly: true))
        XCTAssertEqual(fresh.chunkCount, writer.chunkCount)
        for q in Self.queries.prefix(10) + ["exception handling with try and finally"] {
            XCTAssertEqual(try fresh.search(q).results, try writer.search(q).results, q)
            XCTAssertEqual(try fresh.search(q, options: sparse).results, try writer.search(q, options: sparse).results, q)
        }
    }

    func testModesFusionAndGrouping() throws {
        let index = try Self.corpusIndex()
        let q = "exception handling with try and finally"
        let grouped = try index.search(q, options: SearchOptions(k: 10)).results
        XCTAssertEqual(Set(grouped.map(\.path)).count, grouped.count, "one result per document")
        let dense = try index.search(q, options: SearchOptions(k: 5, mode: .dense)).results
        XCTAssertTrue(dense.allSatisfy { $0.sparse == nil && $0.colbert == nil && $0.dense != nil })
        XCTAssertEqual(dense.map(\.score), dense.map { $0.dense! })
        let noColbert = try index.search(q, options: SearchOptions(k: 5, weights: FusionWeights(dense: 1, sparse: 1, colbert: 0))).results
        XCTAssertTrue(noColbert.allSatisfy { $0.colbert == nil })
        for r in noColbert { XCTAssertEqual(r.score, (r.dense! + r.sparse!) / 2, accuracy: 1e-5) }
        let rrf = try index.search(q, options: SearchOptions(k: 5, fusion: .rrf)).results
        XCTAssertEqual(rrf.count, 5)
        XCTAssertTrue(rrf.allSatisfy { $0.score > 0 && $0.score <= (0.4 + 0.3 + 0.3) / 61 + 1e-6 })
        // The chunk's text is the document's text at its character range.
        let r = grouped[0]
        let doc = try String(contentsOfFile: r.path, encoding: .utf8)
        if !r.path.hasSuffix(".html") {
            let scalars = Array(doc.unicodeScalars)
            XCTAssertEqual(String(String.UnicodeScalarView(scalars[r.charRange])), r.text)
        }
    }

    func testBadQueriesAndOptionsAreClearErrors() throws {
        let index = try Self.corpusIndex()
        XCTAssertThrowsError(try index.search("   ")) {
            XCTAssertEqual(($0 as? M3SearchError)?.kind, .invalidArgument)
            XCTAssertEqual(($0 as? M3SearchError)?.message, "Invalid query: the query is empty")
        }
        XCTAssertThrowsError(try index.search("x", options: SearchOptions(k: 0))) { error in
            guard let e = error as? M3SearchError, e.kind == .invalidArgument, e.message.hasPrefix("Invalid search options:") else {
                return XCTFail("\(error)")
            }
        }
        XCTAssertThrowsError(try index.search("x", options: SearchOptions(weights: FusionWeights(dense: 0, sparse: 0, colbert: 0))))
        XCTAssertThrowsError(try FusionWeights(parsing: "0.4,0.3"))
        XCTAssertThrowsError(try FusionWeights(parsing: "a,b,c"))
        XCTAssertThrowsError(try FusionWeights(parsing: "-1,0,1"))
    }
}

/// A stored chunk's text and blobs, copied out of the index file (tests read rows through
/// the store's named methods: no SQL outside M3Store).
struct StoredChunk {
    var id: Int64
    var documentPath: String
    var ordinal: Int
    var text: String
    var dense: Data
    var sparse: Data
    var colbert: Data
}

/// Every stored chunk of the index at `path`, by document and ordinal.
func storedChunks(atPath path: String) throws -> [StoredChunk] {
    var out: [StoredChunk] = []
    try IndexStore(path: path, readOnly: true).forEachChunkWithDocument { document, row in
        out.append(StoredChunk(id: row.chunk.id, documentPath: document.path, ordinal: row.chunk.ordinal, text: row.chunk.text,
                               dense: Data(row.dense), sparse: Data(row.sparse), colbert: Data(row.colbert)))
    }
    return out
}
