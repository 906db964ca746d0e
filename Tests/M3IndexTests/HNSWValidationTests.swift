import XCTest
@testable import M3Index

/// `validateStructure` checks a large graph's slots in ranges on several threads: the
/// verdict and the message must be those of one pass in slot order (damage in a higher
/// range must not hide damage in a lower one), and the state counts of the ranges must add
/// up to the graph's.
final class HNSWValidationTests: XCTestCase {
    /// The failure message of `validateStructure(parts:)`, or nil when it passes.
    private func failure(_ g: HNSWIndex, parts: Int) -> String? {
        do {
            try g.validateStructure(parts: parts) { .corrupt(what: "test", detail: $0) }
            return nil
        } catch {
            guard case .corrupt(_, let detail) = error else { return "unexpected \(error)" }
            return detail
        }
    }

    func testRangesGiveTheMessageOfOnePassInSlotOrder() throws {
        let data = EmbeddingModel(dimension: 16, seed: 11).sample(count: 600, seed: 12)
        let g = try HNSWIndex(parameters: .init(dimension: 16, m: 6, efConstruction: 40, seed: 13))
        for (i, v) in data.enumerated() { try g.insert(id: Int64(i), vector: v) }
        for i in stride(from: 0, to: 600, by: 9) { g.remove(id: Int64(i)) }
        _ = g.compact()  // free slots
        for i in stride(from: 1, to: 600, by: 13) { g.remove(id: Int64(i)) }  // tombstones
        XCTAssertGreaterThan(g.tombstones, 0)
        XCTAssertGreaterThan(g.freeSlots.count, 0)
        let n = g.slotCount, stride0 = g.maxM0 + 1
        for parts in [1, 2, 3, 4, n + 5] { XCTAssertNil(failure(g, parts: parts), "sound graph, \(parts) parts") }

        // A linked slot with at least two layer-0 links, in the lower and the upper part.
        func linked(from start: Int) -> Int {
            (start ..< n).first { g.states[$0] != HNSWIndex.SlotState.free.rawValue && g.links0[$0 * stride0] >= 2 }!
        }
        let low = linked(from: n / 8), high = linked(from: 3 * n / 4)
        let lowList = g.links0 + low * stride0, highList = g.links0 + high * stride0
        let saved = (low: Array(UnsafeBufferPointer(start: lowList, count: stride0)),
                     high: Array(UnsafeBufferPointer(start: highList, count: stride0)), state: g.states[high])
        func restore() {
            for i in 0 ..< stride0 { lowList[i] = saved.low[i]; highList[i] = saved.high[i] }
            g.states[high] = saved.state
        }
        let cases: [(String, () -> Void, String)] = [
            ("self link above", { highList[1] = UInt32(high) }, "slot \(high) links to itself on layer 0"),
            ("link out of range above", { highList[1] = UInt32(n) }, "slot \(high) layer 0 links to slot \(n) ≥ \(n) slots"),
            ("unknown state above", { g.states[high] = 9 }, "slot \(high) has unknown state 9"),
            ("duplicate below, self link above", {
                lowList[2] = lowList[1]
                highList[1] = UInt32(high)
            }, "slot \(low) links to slot \(saved.low[1]) twice on layer 0"),
        ]
        for (label, damage, expected) in cases {
            damage()
            for parts in [1, 2, 3, 4] { XCTAssertEqual(failure(g, parts: parts), expected, "\(label), \(parts) parts") }
            restore()
        }
        XCTAssertNil(failure(g, parts: 2))
        XCTAssertNoThrow(try g.checkIntegrity())
    }
}
