import XCTest
import M3Index
import M3TestSupport

/// The graph image (HNSWIndex+Image.swift) against the record-by-record load of the same
/// graph: the same slots, records, vectors and search results, for both encodings, with
/// every slot state and segments that do not divide the slot count; damaged or forged
/// images are errors, never traps.
final class HNSWImageTests: XCTestCase {
    let dim = 24
    lazy var model = EmbeddingModel(dimension: dim, latent: 8, seed: 31)
    lazy var queries = model.sample(count: 30, seed: 32)

    /// Live, deleted and free slots, and some upper-layer nodes.
    func makeIndex(_ encoding: HNSWIndex.VectorEncoding) throws -> HNSWIndex {
        let data = model.sample(count: 700, seed: 33)
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: 6, efConstruction: 48, efSearch: 32, seed: 9, encoding: encoding))
        for (i, v) in data.enumerated() { try index.insert(id: Int64(i * 5 + 1), vector: v) }
        for i in stride(from: 0, to: 700, by: 9) { index.remove(id: Int64(i * 5 + 1)) }
        index.compact()
        for i in stride(from: 2, to: 700, by: 13) { index.remove(id: Int64(i * 5 + 1)) }
        return index
    }

    /// Loads an image made with `segmentSlots`, after `tamper` changed its parts.
    func loadImage(of index: HNSWIndex, segmentSlots: Int, encoding: HNSWIndex.VectorEncoding,
                   tamper: (inout [(links: [UInt8], rows: [UInt8])]) -> Void = { _ in }) throws -> HNSWIndex {
        let manifest = try HNSWIndex.ImageManifest(bytes: index.imageManifest(commit: 7, segmentSlots: segmentSlots).bytes)
        XCTAssertEqual(manifest.commit, 7)
        XCTAssertEqual(manifest.header, index.metaBytes())
        var parts = (0 ..< manifest.segments).map { index.imageSegment($0, segmentSlots: segmentSlots) }
        tamper(&parts)
        var loader = try HNSWIndex.Loader(meta: manifest.header, encoding: encoding)
        for (k, part) in parts.enumerated() {
            try part.links.withUnsafeBytes { links in
                try part.rows.withUnsafeBytes { rows in
                    try loader.addImageSegment(k, segmentSlots: segmentSlots, links: links, rows: rows)
                }
            }
        }
        return try loader.finish()
    }

    /// The record-by-record load (the reference): records and vectors as a store keeps them.
    func loadRecords(of index: HNSWIndex, encoding: HNSWIndex.VectorEncoding) throws -> HNSWIndex {
        var loader = try HNSWIndex.Loader(meta: index.metaBytes(), encoding: encoding)
        for s in 0 ..< index.slotCount {
            let record = index.nodeRecord(slot: s)
            try loader.add(record, vector: record.state == .free ? [] : index.vector(slot: s))
        }
        return try loader.finish()
    }

    func testImageLoadsTheSameGraphAsRecords() throws {
        for encoding in [HNSWIndex.VectorEncoding.float32, .int8] {
            let index = try makeIndex(encoding)
            let report = try index.checkIntegrity()
            XCTAssertGreaterThan(report.deleted, 0)
            XCTAssertGreaterThan(report.free, 0)
            let reference = try loadRecords(of: index, encoding: encoding)
            for segmentSlots in [1, 64, 100, 10_000] {
                let imaged = try loadImage(of: index, segmentSlots: segmentSlots, encoding: encoding)
                XCTAssertEqual(imaged.metaBytes(), reference.metaBytes(), "\(encoding) \(segmentSlots)")
                XCTAssertEqual(imaged.slotCount, index.slotCount)
                for s in 0 ..< index.slotCount {
                    XCTAssertEqual(imaged.nodeRecord(slot: s), reference.nodeRecord(slot: s), "slot \(s)")
                    XCTAssertEqual(imaged.vector(slot: s), index.vector(slot: s), "slot \(s)")
                }
                for q in queries {
                    XCTAssertEqual(try imaged.search(q, k: 10), try reference.search(q, k: 10))
                    XCTAssertEqual(try imaged.search(q, k: 10), try index.search(q, k: 10))
                }
                XCTAssertNoThrow(try imaged.checkIntegrity())
                // The loaded graph takes writes like the original.
                let v = model.sample(count: 1, seed: 34)[0]
                try imaged.insert(id: 1_000_001, vector: v)
                XCTAssertEqual(try imaged.search(v, k: 1).first?.id, 1_000_001)
            }
        }
    }

    func testForgedOrTruncatedImagesAreErrors() throws {
        let index = try makeIndex(.int8)
        let n = 64
        func expectCorrupt(_ label: String, _ tamper: (inout [(links: [UInt8], rows: [UInt8])]) -> Void) {
            XCTAssertThrowsError(try loadImage(of: index, segmentSlots: n, encoding: .int8, tamper: tamper), label) { error in
                guard case IndexError.corrupt = error else { return XCTFail("\(label): \(error)") }
            }
        }
        expectCorrupt("short rows") { $0[0].rows.removeLast() }
        expectCorrupt("short links") { $0[1].links.removeLast(4) }
        expectCorrupt("missing segment") { $0.removeLast() }
        expectCorrupt("unknown state") { $0[0].links[3] = 9 }
        expectCorrupt("level over the header's") { $0[0].links[n + 3] = 17 }
        // A layer-0 link out of range: after states (n), levels (n) and ids (8n), slot 0's list.
        expectCorrupt("link out of range") { parts in
            let at = 10 * n
            let count = parts[0].links[at]
            if count == 0 { parts[0].links[at] = 1 }
            for i in 0 ..< 4 { parts[0].links[at + 4 + i] = 0xFF }
        }
        expectCorrupt("id live twice") { parts in
            // Two live slots with one id: the second live slot's id over the first's.
            let live = (0 ..< n).filter { parts[0].links[$0] == 0 }
            for i in 0 ..< 8 { parts[0].links[2 * n + 8 * live[0] + i] = parts[0].links[2 * n + 8 * live[1] + i] }
        }
        XCTAssertThrowsError(try HNSWIndex.ImageManifest(bytes: Array(index.imageManifest(commit: 1).bytes.dropLast())))
        XCTAssertThrowsError(try HNSWIndex.ImageManifest(bytes: [UInt8](repeating: 0, count: 40)))
    }

    /// A graph whose buffers pass 1 MB, so the loader's reservation maps them
    /// (`GraphBuffer`, MAP_POPULATE), with copies of vectors (twins: their flags are derived
    /// at load): the image and the records both load the graph that was built, it searches
    /// like the original, and it grows (leaving the mapped buffers) when written to.
    func testLargeGraphLoadsIntoMappedBuffersAndGrows() throws {
        let dim = 256
        let big = EmbeddingModel(dimension: dim, latent: 16, seed: 41)
        var data = big.sample(count: 1_100, seed: 42)
        for i in stride(from: 10, to: data.count, by: 10) { data[i] = data[i - 7] }  // exact copies
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: 8, efConstruction: 40, efSearch: 40, seed: 5))
        for (i, v) in data.enumerated() { try index.insert(id: Int64(i), vector: v) }
        XCTAssertGreaterThanOrEqual(index.slotCount * dim * 4, 1 << 20)
        let queries = big.sample(count: 20, seed: 43) + [data[3], data[10]]

        let segmentSlots = 300
        let manifest = index.imageManifest(commit: 1, segmentSlots: segmentSlots)
        var imageLoader = try HNSWIndex.Loader(meta: manifest.header)
        imageLoader.reserve(slots: index.slotCount)
        for k in 0 ..< manifest.segments {
            let part = index.imageSegment(k, segmentSlots: segmentSlots)
            try part.links.withUnsafeBytes { links in
                try part.rows.withUnsafeBytes { rows in try imageLoader.addImageSegment(k, segmentSlots: segmentSlots, links: links, rows: rows) }
            }
        }
        let imaged = try imageLoader.finish()
        var recordLoader = try HNSWIndex.Loader(meta: index.metaBytes())
        recordLoader.reserve(slots: index.slotCount)
        for s in 0 ..< index.slotCount {
            let record = index.nodeRecord(slot: s)
            try recordLoader.add(record, vector: index.vector(slot: s))
        }
        let records = try recordLoader.finish()
        for loaded in [imaged, records] {
            XCTAssertEqual(loaded.metaBytes(), index.metaBytes())
            for s in 0 ..< index.slotCount {
                XCTAssertEqual(loaded.nodeRecord(slot: s), index.nodeRecord(slot: s), "slot \(s)")
                XCTAssertEqual(loaded.vector(slot: s), index.vector(slot: s), "slot \(s)")
            }
            for q in queries {
                XCTAssertEqual(try loaded.search(q, k: 10), try index.search(q, k: 10))
                XCTAssertEqual(try loaded.search(q, k: 30, ef: 100), try index.search(q, k: 30, ef: 100))
            }
            XCTAssertNoThrow(try loaded.checkIntegrity())
            XCTAssertNil(loaded.differenceFrom(index))
        }
        // Growth moves the rows out of the mapped buffer; the graph stays whole.
        let extra = big.sample(count: 40, seed: 44)
        for (i, v) in extra.enumerated() { try imaged.insert(id: 10_000 + Int64(i), vector: v) }
        XCTAssertNoThrow(try imaged.checkIntegrity())
        for (i, v) in extra.enumerated() { XCTAssertEqual(try imaged.search(v, k: 1).first?.id, 10_000 + Int64(i)) }
        XCTAssertEqual(imaged.vector(slot: 5), index.vector(slot: 5))
    }
}
