import XCTest
@testable import M3Index
import M3TestSupport

/// `ImageScan` against brute force over the graph it images: the exact top n by the graph's
/// own exact score (`HNSWIndex.score`), ties by id, with deleted and free slots skipped,
/// filters applied, vectors as `vector(forID:)` gives them, for both encodings, segments that
/// do not divide the slot count and the segments split between two searches.
final class ImageScanTests: XCTestCase {
    let dim = 24
    lazy var model = EmbeddingModel(dimension: dim, latent: 8, seed: 41)

    func makeIndex(_ encoding: HNSWIndex.VectorEncoding) throws -> HNSWIndex {
        let data = model.sample(count: 500, seed: 42)
        let index = try HNSWIndex(parameters: .init(dimension: dim, m: 6, efConstruction: 40, efSearch: 32, seed: 5, encoding: encoding))
        for (i, v) in data.enumerated() { try index.insert(id: Int64(i * 3 + 2), vector: v) }
        for i in stride(from: 0, to: 500, by: 7) { index.remove(id: Int64(i * 3 + 2)) }
        index.compact()
        for i in stride(from: 1, to: 500, by: 11) { index.remove(id: Int64(i * 3 + 2)) }
        // Two vectors equal to others: ties, which rank by id.
        try index.insert(id: 10_000, vector: data[1])
        try index.insert(id: 9_999, vector: data[4])
        return index
    }

    func scan(of index: HNSWIndex, segmentSlots: Int) throws -> (ImageScan, [[UInt8]]) {
        let manifest = index.imageManifest(commit: 3, segmentSlots: segmentSlots)
        let parts = (0 ..< manifest.segments).map { index.imageSegment($0, segmentSlots: segmentSlots) }
        var scan = try ImageScan(manifest: manifest, storedBytes: parts.reduce(0) { $0 + $1.links.count + $1.rows.count })
        var rows: [[UInt8]] = []
        for (k, part) in parts.enumerated() {
            try part.links.withUnsafeBytes { try scan.addLinks(k, $0) }
            rows.append(part.rows)
        }
        try scan.finish()
        return (scan, rows)
    }

    func liveIDs(_ index: HNSWIndex) -> [Int64] {
        (0 ..< index.slotCount).map { index.nodeRecord(slot: $0) }.filter { $0.state == .live }.map(\.id)
    }

    /// Brute force: every live id's exact score, best first, ties by id.
    func bruteForce(_ index: HNSWIndex, _ q: [Float], n: Int, allow: (Int64) -> Bool = { _ in true }) -> [IndexHit] {
        let hits = q.withUnsafeBufferPointer { qp in
            liveIDs(index).filter(allow).map { IndexHit(id: $0, score: index.score(qp, id: $0)!) }
        }
        return Array(hits.sorted(by: IndexHit.ranksBefore).prefix(n))
    }

    func testScanFindsTheBruteForceTopN() throws {
        for encoding in [HNSWIndex.VectorEncoding.float32, .int8] {
            let index = try makeIndex(encoding)
            for segmentSlots in [64, 97, 4096] {
                let (scan, rows) = try scan(of: index, segmentSlots: segmentSlots)
                XCTAssertEqual(scan.count, index.count)
                XCTAssertEqual(Set(scan.liveIDs), Set(liveIDs(index)))
                XCTAssertEqual(scan.liveIDs.count, scan.count)
                for id in Int64(0) ..< 1_600 { XCTAssertEqual(scan.contains(id), index.contains(id: id), "\(id)") }
                let queries = model.sample(count: 12, seed: 43) + [try XCTUnwrap(index.vector(forID: 10_000))]
                for (qi, q) in queries.enumerated() {
                    let n = [1, 10, 60, 2_000][qi % 4]
                    let keeping: Set<Int64> = [2, 5, 10_000, 123_456]  // some live, one deleted, one never stored
                    var search = scan.search(q, n: n, keeping: keeping)
                    for k in rows.indices.reversed() { try rows[k].withUnsafeBytes { try search.add(segment: k, rows: $0) } }
                    let (hits, vectors) = try ImageScan.Search.finish([search])
                    let expected = bruteForce(index, q, n: n)
                    XCTAssertEqual(hits, expected, "\(encoding) segments of \(segmentSlots), query \(qi)")
                    let wanted = Set(hits.map { $0.id }).union(keeping.filter { index.contains(id: $0) })
                    for id in wanted { XCTAssertEqual(vectors[id], index.vector(forID: id), "vector of \(id)") }
                    XCTAssertEqual(Set(vectors.keys), wanted)
                }
            }
        }
    }

    func testFilterAndSplitSegments() throws {
        let index = try makeIndex(.int8)
        let (scan, rows) = try scan(of: index, segmentSlots: 50)
        let q = model.sample(count: 1, seed: 44)[0]
        let allowed = Set(liveIDs(index).filter { $0 % 4 == 0 })
        var even = scan.search(q, n: 15, filter: IDFilter(allowing: allowed))
        var odd = scan.search(q, n: 15, filter: IDFilter(allowing: allowed))
        for k in rows.indices { try rows[k].withUnsafeBytes { k % 2 == 0 ? try even.add(segment: k, rows: $0) : try odd.add(segment: k, rows: $0) } }
        XCTAssertEqual(try ImageScan.Search.finish([even, odd]).hits, bruteForce(index, q, n: 15) { allowed.contains($0) })
        // Parts in pieces of 3 rows (the reader's pieces), the segments in any order.
        var pieces = scan.search(q, n: 15)
        let rowBytes = scan.rowBytes
        for k in rows.indices.shuffled() {
            try rows[k].withUnsafeBytes { all in
                for at in stride(from: 0, to: all.count, by: 3 * rowBytes) {
                    try pieces.add(segment: k, rows: UnsafeRawBufferPointer(rebasing: all[at ..< min(at + 3 * rowBytes, all.count)]))
                }
            }
        }
        XCTAssertEqual(try ImageScan.Search.finish([pieces]).hits, bruteForce(index, q, n: 15))
        var ragged = scan.search(q, n: 5)
        XCTAssertThrowsError(try rows[0].withUnsafeBytes { try ragged.add(segment: 0, rows: UnsafeRawBufferPointer(rebasing: $0[..<(rowBytes + 1)])) },
                             "not whole rows")
        // Every segment exactly once: one missing, or one given twice, is an error.
        var partial = scan.search(q, n: 5)
        try rows[0].withUnsafeBytes { try partial.add(segment: 0, rows: $0) }
        XCTAssertThrowsError(try ImageScan.Search.finish([partial]))
        XCTAssertThrowsError(try rows[0].withUnsafeBytes { try partial.add(segment: 0, rows: $0) })
        XCTAssertThrowsError(try rows[1].withUnsafeBytes { try partial.add(segment: 0, rows: $0) }, "wrong size")
    }

    /// Damaged links parts are errors, never traps: wrong sizes, states, levels, an id live twice, missing segments.
    func testDamagedLinksAreErrors() throws {
        let index = try makeIndex(.int8)
        let segmentSlots = 100
        let manifest = index.imageManifest(commit: 3, segmentSlots: segmentSlots)
        let segments = (0 ..< manifest.segments).map { index.imageSegment($0, segmentSlots: segmentSlots) }
        let parts = segments.map(\.links)
        let stored = segments.reduce(0) { $0 + $1.links.count + $1.rows.count }
        func load(_ tamper: (inout [[UInt8]]) -> Void) throws {
            var links = parts
            tamper(&links)
            var scan = try ImageScan(manifest: manifest, storedBytes: stored)
            for (k, part) in links.enumerated() { try part.withUnsafeBytes { try scan.addLinks(k, $0) } }
            try scan.finish()
        }
        XCTAssertNoThrow(try load { _ in })
        XCTAssertThrowsError(try load { $0[1].removeLast() })
        XCTAssertThrowsError(try load { $0[0][3] = 7 })                  // unknown state
        XCTAssertThrowsError(try load { $0[0][100 + 3] = 60 })           // level above the header's
        XCTAssertThrowsError(try load { $0.removeLast() })               // a segment missing
        XCTAssertThrowsError(try load { p in                              // slot 1's id is slot 0's
            let n = 100
            for b in 0 ..< 8 { p[0][2 * n + 8 + b] = p[0][2 * n + b] }
            p[0][0] = 0; p[0][1] = 0
        })
        var forged = manifest
        forged.segments += 1
        XCTAssertThrowsError(try ImageScan(manifest: forged, storedBytes: stored))
        // A header claiming more slots than the stored bytes hold (it would size the arrays).
        XCTAssertThrowsError(try ImageScan(manifest: manifest, storedBytes: stored / 2))
        var huge = manifest
        // The header ends with u32 slots, live, deleted, i32 entry, max level (little-endian).
        let end = huge.header.count
        for (at, value) in [(end - 20, UInt32(Int32.max)), (end - 16, UInt32(Int32.max)), (end - 12, UInt32(0))] {
            for b in 0 ..< 4 { huge.header[at + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(b))) }
        }
        XCTAssertNoThrow(try { _ = try HNSWIndex.Loader(meta: huge.header) }(), "a header the record loader accepts")
        huge.segments = (Int(Int32.max) + segmentSlots - 1) / segmentSlots
        XCTAssertThrowsError(try ImageScan(manifest: huge, storedBytes: stored))
    }
}

/// `IDSet` against Swift's `Set`: random and adversarial ids (colliding homes, `Int64.min`,
/// negatives), duplicates refused, membership of absent ids.
final class IDSetTests: XCTestCase {
    func testMatchesSet() {
        var rng = SystemRandomNumberGenerator()
        for n in [0, 1, 7, 1_000, 50_000] {
            var ids = (0 ..< n).map { _ in Int64.random(in: -1_000_000 ... 1_000_000, using: &rng) }
            ids += [Int64.min, Int64.max, 0, -1] + (0 ..< 64).map { Int64($0) << 58 }  // equal low bits
            var set = IDSet(capacity: ids.count)
            var reference = Set<Int64>()
            for id in ids { XCTAssertEqual(set.insert(id), reference.insert(id).inserted, "\(id)") }
            XCTAssertEqual(set.count, reference.count)
            XCTAssertEqual(Set(set.elements), reference)
            for id in ids.prefix(500) + (0 ..< 500).map({ _ in Int64.random(in: .min ... .max, using: &rng) }) {
                XCTAssertEqual(set.contains(id), reference.contains(id), "\(id)")
            }
        }
    }
}
