import Foundation
import M3Index
@testable import M3Search
import XCTest

/// The int8 graph an index with int8 dense storage opens with (issue 13 item 5) against a
/// float32 graph over the same file, on the committed corpus.
final class CompactGraphTests: XCTestCase {
    /// The corpus index (int8 dense storage, the default) opened a second time with its
    /// graph forced to float32, the layout every index used before.
    func openBoth() throws -> (compact: SearchIndex, float: SearchIndex) {
        let compact = try SearchEngineTests.corpusIndex()
        var options = IndexOptions.existing(readOnly: true)
        options.graphEncoding = .float32
        let float = try SearchIndex(path: compact.path, model: try SearchEngineTests.model(), options: options)
        XCTAssertEqual(compact.settings.denseStorage, .int8)
        XCTAssertEqual(compact.hnsw.encoding, .int8)
        XCTAssertEqual(float.hnsw.encoding, .float32)
        return (compact, float)
    }

    /// Hybrid and dense-only top 10 agree with the float32 graph's within the recall bound
    /// (≥ 0.95, the compact graph's target), the scores of every chunk both return are the
    /// same (dense within float rounding: both score the stored vector), and the graphs hold
    /// the same links.
    func testSearchResultsEqualTheFloat32Graphs() throws {
        let (compact, float) = try openBoth()
        XCTAssertEqual(compact.hnsw.metaBytes(), float.hnsw.metaBytes())
        for slot in stride(from: 0, to: compact.hnsw.slotCount, by: 7) {
            XCTAssertEqual(compact.hnsw.nodeRecord(slot: slot), float.hnsw.nodeRecord(slot: slot))
        }
        // Dense-only with 10 candidates from an ef-64 traversal: the rescoring decides which
        // 10 of the 64 are kept; hybrid at the defaults.
        let modes = [("dense", SearchOptions(k: 10, mode: .dense, candidates: 10, groupByDocument: false, efSearch: 64)),
                     ("hybrid", SearchOptions(k: 10, groupByDocument: false))]
        for (name, options) in modes {
            var same = 0, total = 0, exactFound = 0
            for q in SearchEngineTests.queries {
                let e = try compact.model.encode([q], options: EncodeOptions(maxLength: 512))[0]
                let a = try compact.search(encoded: e, options: options).results
                let b = try float.search(encoded: e, options: options).results
                let exact = Set(try compact.exhaustiveSearch(encoded: e, options: options).map(\.chunkID))
                let byID = Dictionary(uniqueKeysWithValues: b.map { ($0.chunkID, $0) })
                for r in a {
                    exactFound += exact.contains(r.chunkID) ? 1 : 0
                    guard let s = byID[r.chunkID] else { continue }
                    same += 1
                    XCTAssertEqual(Double(r.dense ?? 0), Double(s.dense ?? 0), accuracy: 1e-5, q)
                    XCTAssertEqual(r.sparse, s.sparse, q)
                    XCTAssertEqual(r.colbert, s.colbert, q)
                    XCTAssertEqual(Double(r.score), Double(s.score), accuracy: 1e-5, q)
                }
                total += b.count
            }
            let overlap = Double(same) / Double(total), recall = Double(exactFound) / Double(total)
            print("int8 graph, \(name): top-10 overlap with the float32 graph \(overlap), recall@10 vs exhaustive \(recall)")
            XCTAssertGreaterThanOrEqual(overlap, 0.95, name)
            XCTAssertGreaterThanOrEqual(recall, 0.95, name)
        }
    }

    /// The graph's candidates (before exact scoring of the chunks) against brute force on the
    /// stored vectors: the int8 traversal with exact rescoring finds what float32 finds.
    func testCandidatesMatchBruteForce() throws {
        let (compact, float) = try openBoth()
        var brute = try BruteForceIndex(dimension: compact.settings.dimension)
        var stored: [Int64: [Float]] = [:]
        try compact.store.forEachDenseVector { id, dense in
            stored[id] = VectorCoding.decodeDense(dense, dimension: compact.settings.dimension, storage: .int8, unit: true)!
            try brute.add(id: id, vector: stored[id]!)
        }
        var found = [0, 0], total = 0
        for q in SearchEngineTests.queries {
            let v = try compact.model.encode([q], options: EncodeOptions(outputs: .dense))[0].dense!
            let truth = Set(try brute.search(v, k: 10).map(\.id))
            for (i, index) in [compact, float].enumerated() {
                let hits = try IndexReader.graphSearch(index.hnsw, v, n: 10, ef: 64)
                found[i] += hits.filter { truth.contains($0.id) }.count
                // Rescored: the scores are those of the stored vectors.
                for h in hits { XCTAssertEqual(h.score, Similarity.dot(v, stored[h.id]!), accuracy: 1e-5) }
            }
            total += truth.count
        }
        let recall = found.map { Double($0) / Double(total) }
        print("graph candidates recall@10 at ef 64: int8 \(recall[0]), float32 \(recall[1])")
        XCTAssertGreaterThanOrEqual(recall[0], 0.95)
        XCTAssertGreaterThanOrEqual(recall[0], recall[1] - 0.02)
    }
}
