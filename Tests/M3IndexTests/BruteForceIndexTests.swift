import XCTest
import M3Index

final class BruteForceIndexTests: XCTestCase {
    func testExactTopKWithTiesAndRemoval() throws {
        var index = try BruteForceIndex(dimension: 2)
        // Scores against query (1, 0): ids 5 and 3 tie at 0.6, ids 9 and 1 tie at 0.
        try index.add(id: 5, vector: [0.6, 0.8])
        try index.add(id: 3, vector: [0.6, -0.8])
        try index.add(id: 9, vector: [0, 1])
        try index.add(id: 1, vector: [0, -1])
        try index.add(id: 7, vector: [1, 0])
        XCTAssertEqual(try index.search([1, 0], k: 10).map(\.id), [7, 3, 5, 1, 9])
        XCTAssertEqual(try index.search([1, 0], k: 2).map(\.id), [7, 3])
        XCTAssertEqual(try index.search([1, 0], k: 4).map(\.id), [7, 3, 5, 1])
        XCTAssertEqual(try index.search([1, 0], k: 0), [])

        XCTAssertTrue(index.remove(id: 3))
        XCTAssertFalse(index.remove(id: 3))
        XCTAssertEqual(try index.search([1, 0], k: 3).map(\.id), [7, 5, 1])
        XCTAssertEqual(index.count, 4)
        try index.add(id: 3, vector: [0.6, -0.8])
        XCTAssertEqual(try index.search([1, 0], k: 3).map(\.id), [7, 3, 5])
    }

    func testValidation() throws {
        var index = try BruteForceIndex(dimension: 3)
        XCTAssertEqual(try index.search([1, 0, 0], k: 5), [])
        XCTAssertThrowsError(try index.add(id: 1, vector: [1, 0])) { XCTAssertEqual($0 as? IndexError, .dimensionMismatch(expected: 3, actual: 2)) }
        XCTAssertThrowsError(try index.add(id: 1, vector: [1, .nan, 0])) { XCTAssertEqual($0 as? IndexError, .nonFiniteValue(position: 1)) }
        try index.add(id: 1, vector: [1, 0, 0])
        XCTAssertThrowsError(try index.add(id: 1, vector: [0, 1, 0])) { XCTAssertEqual($0 as? IndexError, .duplicateID(1)) }
        XCTAssertThrowsError(try index.search([1], k: 1))
        XCTAssertThrowsError(try BruteForceIndex(dimension: 0))
    }
}
