import M3Index
import XCTest

/// The frame the index file puts around an HNSW node record: the chunk id in front.
final class StoredNodeRecordTests: XCTestCase {
    func testFrameRoundTripsAndShortFramesAreCorrupt() throws {
        let index = try HNSWIndex(parameters: .init(dimension: 4, m: 4, efConstruction: 16))
        try index.insert(id: -7, vector: [1, 0, 0, 0])
        try index.insert(id: 1 << 40, vector: [0, 1, 0, 0])
        for slot in 0..<index.slotCount {
            let record = index.nodeRecord(slot: slot)
            let stored = record.storedBytes
            XCTAssertEqual(stored.count, 8 + record.bytes.count)
            // Little-endian id first, independently of the parser.
            XCTAssertEqual(stored.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) },
                           UInt64(bitPattern: record.id))
            let parsed = try stored.withUnsafeBytes { try HNSWNodeRecord(slot: slot, stored: $0) }
            XCTAssertEqual(parsed, record)
        }
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 7).withUnsafeBytes { try HNSWNodeRecord(slot: 3, stored: $0) }) { error in
            guard case IndexError.corrupt(let what, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(what, "HNSW node 3")
        }
    }
}
