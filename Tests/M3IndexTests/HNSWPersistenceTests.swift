import XCTest
import M3Index
import M3TestSupport

/// What the SQLite layer will do: keep a header blob and one row per slot (record + the
/// vector, which the caller stores anyway), updated from `dirtySlots`.
struct FakeStore {
    var meta: [UInt8] = []
    var rows: [Int: (record: HNSWNodeRecord, vector: [Float])] = [:]

    mutating func persist(_ index: HNSWIndex) {
        meta = index.metaBytes()
        for s in index.dirtySlots {
            let record = index.nodeRecord(slot: s)
            rows[s] = (record, record.state == .free ? [] : index.vector(slot: s))
        }
        index.clearDirty()
    }

    func load(encoding: HNSWIndex.VectorEncoding = .float32) throws -> HNSWIndex {
        var loader = try HNSWIndex.Loader(meta: meta, encoding: encoding)
        for s in rows.keys.sorted(by: >) {  // any order
            try loader.add(rows[s]!.record, vector: rows[s]!.vector)
        }
        return try loader.finish()
    }
}

final class HNSWPersistenceTests: XCTestCase {
    let dim = 24
    lazy var model = EmbeddingModel(dimension: dim, latent: 8, seed: 21)
    lazy var queries = model.sample(count: 40, seed: 22)

    /// An index with every slot state: live, deleted (tombstones) and free (compacted).
    func makeIndex() throws -> (HNSWIndex, [[Float]]) {
        let data = model.sample(count: 1200, seed: 23)
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: 8, efConstruction: 64, efSearch: 32, seed: 5))
        for (i, v) in data.enumerated() { try index.insert(id: Int64(i * 3), vector: v) }
        for i in stride(from: 0, to: 1200, by: 7) { index.remove(id: Int64(i * 3)) }
        index.compact()
        for i in stride(from: 1, to: 1200, by: 11) { index.remove(id: Int64(i * 3)) }
        return (index, data)
    }

    func assertSameIndex(_ a: HNSWIndex, _ b: HNSWIndex, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(a.metaBytes(), b.metaBytes(), file: file, line: line)
        XCTAssertEqual(a.slotCount, b.slotCount, file: file, line: line)
        for s in 0..<a.slotCount {
            XCTAssertEqual(a.nodeRecord(slot: s), b.nodeRecord(slot: s), "slot \(s)", file: file, line: line)
        }
        for q in queries {
            XCTAssertEqual(try a.search(q, k: 10), try b.search(q, k: 10), file: file, line: line)
        }
    }

    func testRoundTripAndIncrementalUpdates() throws {
        let (index, data) = try makeIndex()
        let report = try index.checkIntegrity()
        XCTAssertGreaterThan(report.deleted, 0)
        XCTAssertGreaterThan(report.free, 0)

        var store = FakeStore()
        store.persist(index)  // everything is dirty after a build
        XCTAssertEqual(store.rows.count, index.slotCount)
        XCTAssertEqual(index.dirtySlots, [])
        let t0 = now()
        let loaded = try store.load()
        print("HNSW load of \(index.slotCount) slots: \(now() - t0) s")
        try assertSameIndex(index, loaded)
        XCTAssertEqual(try loaded.checkIntegrity(), report)
        XCTAssertEqual(loaded.dirtySlots, [])

        // Incremental: a few changes dirty a few slots; persisting only those keeps the store exact.
        let extra = model.sample(count: 30, seed: 24)
        for (i, v) in extra.enumerated() { try index.insert(id: Int64(100_000 + i), vector: v) }
        index.remove(id: 3)
        let dirty = index.dirtySlots
        print("HNSW: 30 inserts + 1 removal dirtied \(dirty.count) of \(index.slotCount) slots")
        XCTAssertLessThan(dirty.count, index.slotCount / 4)
        store.persist(index)
        try assertSameIndex(index, try store.load())

        // The level generator's state is persisted: a loaded index continues exactly as the original.
        let reopened = try store.load()
        let more = model.sample(count: 20, seed: 25)
        for (i, v) in more.enumerated() {
            try index.insert(id: Int64(200_000 + i), vector: v)
            try reopened.insert(id: Int64(200_000 + i), vector: v)
        }
        try assertSameIndex(index, reopened)

        // Compaction dirties the relinked and freed slots; the store follows.
        index.compact()
        store.persist(index)
        try assertSameIndex(index, try store.load())
        _ = data
    }

    func testEmptyIndexRoundTrip() throws {
        let index = try HNSWIndex(parameters: .init(dimension: 8))
        let loaded = try HNSWIndex.Loader(meta: index.metaBytes()).finish()
        XCTAssertEqual(loaded.count, 0)
        XCTAssertEqual(try loaded.search([1, 0, 0, 0, 0, 0, 0, 0], k: 3), [])
        try loaded.checkIntegrity()
    }

    // MARK: Corrupt input

    func expectCorrupt(_ label: String, meta: [UInt8]? = nil, rows: [(HNSWNodeRecord, [Float])],
                       baseMeta: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        do {
            var loader = try HNSWIndex.Loader(meta: meta ?? baseMeta)
            for (r, v) in rows { try loader.add(r, vector: v) }
            _ = try loader.finish()
            XCTFail("\(label): loaded without error", file: file, line: line)
        } catch {
            guard case .corrupt = error else { return XCTFail("\(label): \(error)", file: file, line: line) }
        }
    }

    func testCorruptInputIsRejected() throws {
        let (index, _) = try makeIndex()
        let meta = index.metaBytes()
        let rows = (0..<index.slotCount).map { s -> (HNSWNodeRecord, [Float]) in
            let r = index.nodeRecord(slot: s)
            return (r, r.bytes[0] == 2 ? [] : index.vector(slot: s))
        }
        // A live slot with ≥ 2 layer-0 links (bytes 2–3: the layer-0 count).
        let liveSlot = rows.firstIndex { $0.0.bytes[0] == 0 && (Int($0.0.bytes[2]) | Int($0.0.bytes[3]) << 8) >= 2 }!
        func with(_ slot: Int, _ change: (inout HNSWNodeRecord, inout [Float]) -> Void) -> [(HNSWNodeRecord, [Float])] {
            var copy = rows
            var (r, v) = copy[slot]
            change(&r, &v)
            copy[slot] = (r, v)
            return copy
        }
        func metaWith(_ offset: Int, _ bytes: [UInt8]) -> [UInt8] {
            var m = meta
            m.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            return m
        }
        func le32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

        // Header.
        expectCorrupt("bad magic", meta: metaWith(0, Array("XXXX".utf8)), rows: rows, baseMeta: meta)
        expectCorrupt("future version", meta: metaWith(4, [9, 0]), rows: rows, baseMeta: meta)
        expectCorrupt("unknown metric", meta: metaWith(6, [7]), rows: rows, baseMeta: meta)
        expectCorrupt("truncated header", meta: Array(meta.prefix(30)), rows: rows, baseMeta: meta)
        expectCorrupt("trailing header bytes", meta: meta + [0], rows: rows, baseMeta: meta)
        expectCorrupt("empty header", meta: [], rows: rows, baseMeta: meta)
        expectCorrupt("dimension 0", meta: metaWith(8, le32(0)), rows: rows, baseMeta: meta)
        expectCorrupt("other dimension", meta: metaWith(8, le32(25)), rows: rows, baseMeta: meta)
        expectCorrupt("M 0", meta: metaWith(12, le32(0)), rows: rows, baseMeta: meta)
        expectCorrupt("more slots than records", meta: metaWith(40, le32(Int32(index.slotCount + 1))), rows: rows, baseMeta: meta)
        expectCorrupt("fewer slots than records", meta: metaWith(40, le32(Int32(index.slotCount - 1))), rows: rows, baseMeta: meta)
        expectCorrupt("huge slot count", meta: metaWith(40, le32(-1)), rows: rows, baseMeta: meta)
        expectCorrupt("live count off", meta: metaWith(44, le32(Int32(index.count + 1))), rows: rows, baseMeta: meta)
        expectCorrupt("deleted count off", meta: metaWith(48, le32(Int32(index.deletedCount - 1))), rows: rows, baseMeta: meta)
        expectCorrupt("entry out of range", meta: metaWith(52, le32(Int32(index.slotCount))), rows: rows, baseMeta: meta)
        expectCorrupt("entry below max level", meta: metaWith(52, le32(Int32(rows.firstIndex { $0.0.bytes[0] != 2 && $0.0.bytes[1] == 0 }!))), rows: rows, baseMeta: meta)
        expectCorrupt("max level too high", meta: metaWith(56, le32(99)), rows: rows, baseMeta: meta)

        // Records.
        expectCorrupt("missing slot", rows: Array(rows.dropLast()), baseMeta: meta)
        expectCorrupt("duplicate slot", rows: rows + [rows[0]], baseMeta: meta)
        expectCorrupt("slot out of range", rows: with(0) { r, _ in r.slot = index.slotCount }, baseMeta: meta)
        expectCorrupt("negative slot", rows: with(0) { r, _ in r.slot = -1 }, baseMeta: meta)
        expectCorrupt("unknown state", rows: with(liveSlot) { r, _ in r.bytes[0] = 3 }, baseMeta: meta)
        expectCorrupt("live turned free", rows: with(liveSlot) { r, _ in r.bytes[0] = 2 }, baseMeta: meta)
        expectCorrupt("live turned deleted", rows: with(liveSlot) { r, _ in r.bytes[0] = 1 }, baseMeta: meta)
        expectCorrupt("level above max", rows: with(liveSlot) { r, _ in r.bytes[1] = 200 }, baseMeta: meta)
        expectCorrupt("truncated links", rows: with(liveSlot) { r, _ in r.bytes.removeLast() }, baseMeta: meta)
        expectCorrupt("trailing link bytes", rows: with(liveSlot) { r, _ in r.bytes += [0, 0, 0, 0] }, baseMeta: meta)
        expectCorrupt("empty record", rows: with(liveSlot) { r, _ in r.bytes = [] }, baseMeta: meta)
        expectCorrupt("too many links", rows: with(liveSlot) { r, _ in r.bytes[2] = 0xff; r.bytes[3] = 0 }, baseMeta: meta)
        expectCorrupt("link out of range", rows: with(liveSlot) { r, _ in r.bytes.replaceSubrange(4..<8, with: le32(Int32(index.slotCount))) }, baseMeta: meta)
        expectCorrupt("self link", rows: with(liveSlot) { r, _ in r.bytes.replaceSubrange(4..<8, with: le32(Int32(liveSlot))) }, baseMeta: meta)
        expectCorrupt("duplicate link", rows: with(liveSlot) { r, _ in r.bytes.replaceSubrange(8..<12, with: Array(r.bytes[4..<8])) }, baseMeta: meta)
        let freeSlot = rows.firstIndex { $0.0.bytes[0] == 2 }!
        expectCorrupt("link to a free slot", rows: with(liveSlot) { r, _ in r.bytes.replaceSubrange(4..<8, with: le32(Int32(freeSlot))) }, baseMeta: meta)
        expectCorrupt("free slot with links", rows: with(freeSlot) { r, _ in r.bytes = [2, 0, 1, 0] + le32(Int32(liveSlot)) }, baseMeta: meta)
        let highSlot = rows.firstIndex { $0.0.bytes[0] != 2 && $0.0.bytes[1] >= 1 }!
        let lowSlot = rows.firstIndex { $0.0.bytes[0] != 2 && $0.0.bytes[1] == 0 && $0.0.slot != highSlot }!
        expectCorrupt("upper link to a level-0 node", rows: with(highSlot) { r, _ in
            // The layer-1 list starts after layer 0's count and links.
            let n0 = Int(r.bytes[2]) | Int(r.bytes[3]) << 8
            let o = 4 + 4 * n0
            r.bytes.replaceSubrange(o..<o + 6, with: [1, 0] + le32(Int32(lowSlot)))
        }, baseMeta: meta)
        let other = rows.first { $0.0.bytes[0] == 0 && $0.0.slot != liveSlot }!.0
        expectCorrupt("live id twice", rows: with(liveSlot) { r, _ in r.id = other.id }, baseMeta: meta)
        expectCorrupt("short vector", rows: with(liveSlot) { _, v in v.removeLast() }, baseMeta: meta)
        expectCorrupt("NaN in vector", rows: with(liveSlot) { _, v in v[3] = .nan }, baseMeta: meta)
        expectCorrupt("unnormalised vector", rows: with(liveSlot) { _, v in v[0] += 0.5 }, baseMeta: meta)
        expectCorrupt("free slot with a wrong-size vector", rows: with(freeSlot) { _, v in v = [1, 2] }, baseMeta: meta)
    }

    /// Random byte damage never traps: the loader either throws IndexError.corrupt or returns
    /// an index whose structure is sound (a flip can turn a link into another valid link).
    func testRandomDamageNeverCrashes() throws {
        let (index, _) = try makeIndex()
        let meta = index.metaBytes()
        let rows = (0..<index.slotCount).map { s -> (HNSWNodeRecord, [Float]) in
            let r = index.nodeRecord(slot: s)
            return (r, r.bytes[0] == 2 ? [] : index.vector(slot: s))
        }
        var rng = TestRNG(seed: 99)
        var rejected = 0, accepted = 0
        for trial in 0..<300 {
            var m = meta
            var rs = rows
            let damage = rng.int(0..<4)
            if damage == 0 {
                m[rng.int(0..<m.count)] ^= UInt8(1 << rng.int(0..<8))
            } else {
                let s = rng.int(0..<rs.count)
                if damage == 1 && !rs[s].0.bytes.isEmpty {
                    rs[s].0.bytes[rng.int(0..<rs[s].0.bytes.count)] = UInt8(rng.int(0..<256))
                } else if damage == 2 {
                    rs[s].0.bytes = Array(rs[s].0.bytes.prefix(rng.int(0..<rs[s].0.bytes.count + 1)))
                } else {
                    rs[s].0.bytes += [UInt8(rng.int(0..<256))]
                }
            }
            do {
                var loader = try HNSWIndex.Loader(meta: m)
                for (r, v) in rs { try loader.add(r, vector: v) }
                let loaded = try loader.finish()
                _ = try loaded.search(queries[trial % queries.count], k: 5)
                accepted += 1
            } catch {
                guard case .corrupt = error else { return XCTFail("trial \(trial): \(error)") }
                rejected += 1
            }
        }
        print("HNSW random damage: \(rejected) rejected, \(accepted) loaded with a valid structure")
        XCTAssertGreaterThan(rejected, 200)
    }
}
