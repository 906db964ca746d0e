import M3Index
import XCTest

/// M3Index's Swift entry points to the similarity kernels (the kernels themselves are
/// tested against references in CM3KernelsTests).
final class SimilarityTests: XCTestCase {
    func testSwiftWrappers() {
        let a: [Float] = [1, 2, 3], b: [Float] = [4, 5, 6]
        XCTAssertEqual(Similarity.dot(a, b), 32)
        XCTAssertEqual(Similarity.dot(a, float16Bits: [0x3C00, 0x4000, 0xBC00]), 1 + 4 - 3)  // 1, 2, −1
        XCTAssertEqual(Similarity.dot([], []), 0)
    }
}
