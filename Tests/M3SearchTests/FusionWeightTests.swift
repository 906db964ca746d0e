import Foundation
import M3Model
@testable import M3Search
import XCTest

/// Issue 16, item 2: weights at Float's edges. Only the ratios of the weights may matter,
/// so each extreme set must rank and score exactly like a plain set with the same ratios.
final class FusionWeightTests: XCTestCase {
    /// 200 chunks with distinct scores in each mode (a fixed linear congruential sequence).
    private func chunks() -> [ScoredChunk] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24)
        }
        return (0 ..< 200).map { ScoredChunk(chunkID: Int64($0), documentID: Int64($0), dense: next(), sparse: next() * 0.3, colbert: next()) }
    }

    private func ranked(_ w: FusionWeights, _ fusion: SearchOptions.Fusion) -> [ScoredChunk] {
        var c = chunks()
        Fusion.fuse(&c, weights: w, fusion: fusion)
        return Fusion.top(c, k: 200, groupByDocument: false)
    }

    func testExtremeWeightsRankLikeTheirRescaledForm() {
        let cases: [(extreme: FusionWeights, plain: FusionWeights)] = [
            (FusionWeights(dense: 1e-45, sparse: 0, colbert: 0), FusionWeights(dense: 1, sparse: 0, colbert: 0)),
            (FusionWeights(dense: .leastNonzeroMagnitude, sparse: 0, colbert: .leastNonzeroMagnitude), FusionWeights(dense: 1, sparse: 0, colbert: 1)),
            (FusionWeights(dense: 3e38, sparse: 3e38, colbert: 3e38), FusionWeights(dense: 1, sparse: 1, colbert: 1)),
            (FusionWeights(dense: .greatestFiniteMagnitude, sparse: .greatestFiniteMagnitude / 2, colbert: 0), FusionWeights(dense: 1, sparse: 0.5, colbert: 0)),
        ]
        for (extreme, plain) in cases {
            for fusion in [SearchOptions.Fusion.weighted, .rrf] {
                let a = ranked(extreme, fusion), b = ranked(plain, fusion)
                XCTAssertEqual(a.map(\.chunkID), b.map(\.chunkID), "\(extreme) \(fusion)")
                for (x, y) in zip(a, b) {
                    XCTAssertTrue(x.fused.isFinite, "\(extreme) \(fusion): \(x.fused)")
                    XCTAssertEqual(x.fused, y.fused, accuracy: 1e-6, "\(extreme) \(fusion)")
                }
                // Not a degenerate ranking: the scores spread (1e-45 used to make every one 1.0).
                XCTAssertGreaterThan(Set(a.map(\.fused)).count, 150, "\(extreme) \(fusion)")
            }
        }
        // The weighted score is FlagEmbedding's Σ wᵢ·sᵢ / Σ wᵢ, computed here in Double.
        let c = chunks()[7]
        let expected = (Double(c.dense!) + Double(c.sparse!) * 0.5) / 1.5
        XCTAssertEqual(Double(ranked(FusionWeights(dense: 3e38, sparse: 1.5e38, colbert: 0), .weighted).first { $0.chunkID == 7 }!.fused), expected, accuracy: 1e-6)
        XCTAssertEqual(Double(Scores.fused([c.dense!, c.sparse!, c.colbert!], weights: [3e38, 1.5e38, 0])), expected, accuracy: 1e-6)
        XCTAssertEqual(Double(Scores.fused([c.dense!, c.sparse!, c.colbert!], weights: [1e-45, 0, 0])), Double(c.dense!), accuracy: 1e-7)
    }

    func testUnrepresentableWeightsAreRefused() throws {
        for text in ["nan,0,0", "inf,1,1", "-1,1,1", "1e39,0,0", "0,0,0"] {
            XCTAssertThrowsError(try FusionWeights(parsing: text), text)
        }
        XCTAssertEqual(try FusionWeights(parsing: "1e-45,0,0").scaledToUnitMaximum, FusionWeights(dense: 1, sparse: 0, colbert: 0))
    }
}
