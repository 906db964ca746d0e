import CM3Kernels

// Exact dense search over a graph image's rows, without building the graph.
//
// Opening the graph from its image reads every row anyway, then copies them into fresh
// memory, links the slots and checks the whole structure: 135 ms at 100k chunks, 1.6 s at
// 1M. A process that answers one query needs none of that: it needs each row's score
// once. `ImageScan` keeps only the slots' ids and states (from the links parts, read at
// open), and a search streams the rows parts through one reused buffer, scoring each row
// exactly as the graph rescores its candidates (float query · stored row). The result is
// the exact dense top n, where the graph's is approximate, at a cost linear in the index
// per search: for `m3search query`, not for a server.

/// The slots of a graph image (ids and states), for exact scans of its rows.
public struct ImageScan {
    public let manifest: HNSWIndex.ImageManifest
    public let dimension: Int
    /// Bytes of one row (the rows part of segment k holds `slots(inSegment: k)` of them).
    public let rowBytes: Int
    /// Chunk id of each live slot; 0 for the others (`isLive` says which).
    private var ids: [Int64] = []
    private var isLive: [Bool] = []
    /// The live chunk ids.
    private var live: IDSet
    private let slotCount: Int, maxM0: Int, maxM: Int, maxLevel: Int
    private let expectedLive: Int, expectedDeleted: Int
    private var deleted = 0

    /// Reads the manifest's HNSW header; add the links parts next, segment by segment.
    /// `storedBytes`: the bytes of the image's parts after the manifest as the file holds
    /// them, which bound what the header may claim (so a forged slot count cannot size an
    /// allocation). Throws `.corrupt` for a header or segment count that cannot be.
    public init(manifest: HNSWIndex.ImageManifest, storedBytes: Int) throws(IndexError) {
        let loader = try HNSWIndex.Loader(meta: manifest.header, encoding: manifest.encoding)
        self.manifest = manifest
        dimension = loader.index.dim
        rowBytes = loader.index.codec.rowBytes
        slotCount = loader.expectedSlots
        maxM0 = loader.index.maxM0
        maxM = loader.index.maxM
        maxLevel = Int(loader.expectedMaxLevel)
        expectedLive = loader.expectedLive
        expectedDeleted = loader.expectedDeleted
        let bytesPerSlot = 10 + (maxM0 + 1) * 4 + rowBytes
        guard slotCount <= storedBytes / bytesPerSlot else {
            throw .corrupt(what: "graph image", detail: "the header's \(slotCount) slots need more than the \(storedBytes) bytes stored")
        }
        let segments = (slotCount + manifest.segmentSlots - 1) / manifest.segmentSlots
        guard manifest.segments == segments else {
            throw .corrupt(what: "graph image manifest", detail: "\(manifest.segments) segments for \(slotCount) slots of \(manifest.segmentSlots)")
        }
        ids.reserveCapacity(slotCount)
        isLive.reserveCapacity(slotCount)
        live = IDSet(capacity: expectedLive)
    }

    /// Live slots.
    public var count: Int { live.count }

    /// Whether `id` is live.
    public func contains(_ id: Int64) -> Bool { live.contains(id) }

    /// The live ids, in no particular order.
    public var liveIDs: [Int64] { live.elements }

    /// Slots in segment `k`.
    public func slots(inSegment k: Int) -> Int {
        max(0, min(manifest.segmentSlots, slotCount - k * manifest.segmentSlots))
    }

    /// Takes segment `k`'s states and ids from its links part (layout: HNSWIndex+Image.swift),
    /// checking its size, states, levels and that no id is live twice. Segments come in order.
    public mutating func addLinks(_ k: Int, _ links: UnsafeRawBufferPointer) throws(IndexError) {
        func fail(_ detail: String) -> IndexError { .corrupt(what: "graph image segment \(k)", detail: detail) }
        let first = k * manifest.segmentSlots
        guard first == ids.count, first < slotCount else { throw fail("starts at slot \(first); \(ids.count) of \(slotCount) slots read") }
        let n = slots(inSegment: k)
        let fixed = n * (2 + 8 + (maxM0 + 1) * 4)
        guard links.count >= fixed else { throw fail("links part has \(links.count) bytes, under the \(fixed) of \(n) slots") }
        var upper = 0
        for i in 0 ..< n {
            let state = links[i], level = Int(links[n + i])
            guard state <= 2 else { throw fail("slot \(first + i) has unknown state \(state)") }
            guard level <= maxLevel || (state == 2 && level == 0) else {
                throw fail("slot \(first + i) has level \(level), above the header's max level \(maxLevel)")
            }
            upper += level * (maxM + 1)
        }
        guard links.count == fixed + upper * 4 else { throw fail("links part has \(links.count) bytes; its levels need \(fixed + upper * 4)") }
        for i in 0 ..< n {
            let id = Int64(littleEndian: links.loadUnaligned(fromByteOffset: 2 * n + 8 * i, as: Int64.self))
            let isLiveSlot = links[i] == HNSWIndex.SlotState.live.rawValue
            if isLiveSlot {
                guard live.count < expectedLive else { throw fail("more live slots than the header's \(expectedLive)") }
                guard live.insert(id) else { throw fail("id \(id) is live in two slots") }
            } else if links[i] == HNSWIndex.SlotState.deleted.rawValue {
                deleted += 1
            }
            ids.append(isLiveSlot ? id : 0)
            isLive.append(isLiveSlot)
        }
    }

    /// Checks that every segment was added and the counts match the header.
    public func finish() throws(IndexError) {
        guard ids.count == slotCount else { throw .corrupt(what: "graph image", detail: "\(ids.count) of \(slotCount) slots read") }
        guard live.count == expectedLive, deleted == expectedDeleted else {
            throw .corrupt(what: "graph image", detail: "\(live.count) live and \(deleted) deleted slots; the header says "
                           + "\(expectedLive) and \(expectedDeleted)")
        }
    }

    /// A search of `query` for its `n` best live rows (allowed by `filter`), which also keeps
    /// the vectors of the ids in `keeping` it passes. Feed it every segment's rows, once each,
    /// in any order; several searches may share the segments (one per thread) and combine
    /// (`Search.finish`).
    public func search(_ query: [Float], n: Int, filter: IDFilter? = nil, keeping: Set<Int64> = []) -> Search {
        Search(scan: self, query: query, n: n, filter: filter, keeping: keeping)
    }

    /// One query's pass over the rows.
    public struct Search {
        let scan: ImageScan
        let rows: VectorRows
        let query: [Float]
        let n: Int
        let filter: IDFilter?
        /// `keeping`, looked up once per row: an `IDSet`, not SipHash.
        let keeping: IDSet
        /// The best n so far, worst first (a binary heap on `worse`), each with the index of
        /// its row's copy in `kept`.
        private var heap: [(hit: IndexHit, copy: Int)] = []
        private var kept: [UInt8]
        private var vectors: [Int64: [Float]] = [:]
        /// Rows scanned per segment.
        private var scanned: [Int]

        init(scan: ImageScan, query: [Float], n: Int, filter: IDFilter?, keeping: Set<Int64>) {
            self.scan = scan
            rows = VectorRows(encoding: scan.manifest.encoding, dimension: scan.dimension)
            self.query = query
            self.n = max(0, min(n, scan.count))
            self.filter = filter
            var lookup = IDSet(capacity: keeping.count)
            for id in keeping { _ = lookup.insert(id) }
            self.keeping = lookup
            kept = [UInt8](repeating: 0, count: self.n * scan.rowBytes)
            heap.reserveCapacity(self.n)
            scanned = [Int](repeating: 0, count: scan.manifest.segments)
        }

        /// Whether a ranks below b (the heap keeps its worst hit on top).
        private static func worse(_ a: IndexHit, _ b: IndexHit) -> Bool { IndexHit.ranksBefore(b, a) }

        /// Scores rows of segment `k`: whole rows, continuing where the last call for the
        /// segment stopped (a rows part may come in pieces), within its `slots(inSegment: k)`.
        public mutating func add(segment k: Int, rows part: UnsafeRawBufferPointer) throws(IndexError) {
            let rowBytes = scan.rowBytes
            guard scanned.indices.contains(k) else {
                throw .corrupt(what: "graph image segment \(k)", detail: "outside the \(scanned.count) segments")
            }
            let done = scanned[k], count = part.count / rowBytes
            guard part.count % rowBytes == 0, done + count <= scan.slots(inSegment: k), query.count == scan.dimension else {
                throw .corrupt(what: "graph image segment \(k)", detail: "\(part.count) bytes of rows after \(done) rows: not whole rows "
                               + "within its \(scan.slots(inSegment: k))")
            }
            scanned[k] += count
            let first = k * scan.manifest.segmentSlots + done
            guard count > 0, let base = part.baseAddress else { return }
            try query.withUnsafeBufferPointer { (q) throws(IndexError) in
                for i in 0 ..< count where scan.isLive[first + i] {
                    let id = scan.ids[first + i]
                    if let filter, !filter.allows(id) { continue }
                    let row = base + i * rowBytes
                    if keeping.count > 0, keeping.contains(id) { vectors[id] = rows.decode(row) }
                    guard n > 0 else { continue }
                    let score = rows.exactScore(q.baseAddress!, row)
                    // A forged row can score NaN: it ranks last, as −∞.
                    let hit = IndexHit(id: id, score: score.isNaN ? -.infinity : score)
                    if heap.count < n {
                        copyRow(row, to: heap.count)
                        heap.append((hit, heap.count))
                        siftUp(heap.count - 1)
                    } else if Self.worse(heap[0].hit, hit) {
                        copyRow(row, to: heap[0].copy)
                        heap[0].hit = hit
                        siftDown(0)
                    }
                }
            }
        }

        private mutating func copyRow(_ row: UnsafeRawPointer, to slot: Int) {
            let rowBytes = scan.rowBytes
            kept.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: slot * rowBytes).copyMemory(from: row, byteCount: rowBytes) }
        }

        private mutating func siftUp(_ i: Int) {
            var i = i
            while i > 0 {
                let parent = (i - 1) / 2
                guard Self.worse(heap[i].hit, heap[parent].hit) else { return }
                heap.swapAt(i, parent)
                i = parent
            }
        }

        private mutating func siftDown(_ i: Int) {
            var i = i
            while true {
                let l = 2 * i + 1, r = l + 1
                var worst = i
                if l < heap.count, Self.worse(heap[l].hit, heap[worst].hit) { worst = l }
                if r < heap.count, Self.worse(heap[r].hit, heap[worst].hit) { worst = r }
                guard worst != i else { return }
                heap.swapAt(i, worst)
                i = worst
            }
        }

        /// The top n (best first) of `parts`, searches of one query that scanned every
        /// segment once between them, and the vectors (as the graph's `vector(forID:)` gives
        /// them) of those and of the `keeping` ids seen. Throws if a segment was not scanned.
        public static func finish(_ parts: [Search]) throws(IndexError) -> (hits: [IndexHit], vectors: [Int64: [Float]]) {
            guard let first = parts.first else { return ([], [:]) }
            let segments = first.scanned.count
            for k in 0 ..< segments {
                let by = parts.filter { $0.scanned[k] > 0 }
                guard by.count == 1, by[0].scanned[k] == first.scan.slots(inSegment: k) else {
                    throw .corrupt(what: "graph image", detail: "segment \(k) of \(segments) not scanned exactly once")
                }
            }
            var vectors: [Int64: [Float]] = [:]
            var all: [IndexHit] = []
            for part in parts {
                vectors.merge(part.vectors) { a, _ in a }
                all += part.heap.map(\.hit)
            }
            all.sort(by: IndexHit.ranksBefore)
            let hits = Array(all.prefix(first.n))
            let wanted = Set(hits.map(\.id))
            for part in parts {
                let rowBytes = part.scan.rowBytes
                part.kept.withUnsafeBytes { k in
                    for entry in part.heap where wanted.contains(entry.hit.id) && vectors[entry.hit.id] == nil {
                        vectors[entry.hit.id] = part.rows.decode(k.baseAddress! + entry.copy * rowBytes)
                    }
                }
            }
            return (hits, vectors)
        }
    }
}

/// A set of ids for membership tests: open addressing with linear probing in a table of
/// twice the capacity (a power of two), hashed by one multiplication. Swift's `Set` hashes
/// with seeded SipHash, which was most of opening a million ids (~150 ms of 170).
/// Inserting more than `capacity` ids is the caller's error to prevent (`addLinks` stops at
/// the header's live count).
struct IDSet {
    /// Empty entries hold `Int64.min`; the id `Int64.min` itself is kept in `hasMin`.
    private var table: [Int64]
    private var hasMin = false
    private let shift: UInt64
    private(set) var count = 0

    init(capacity: Int) {
        var bits = 4
        while (1 << bits) < 2 * capacity { bits += 1 }
        table = [Int64](repeating: .min, count: 1 << bits)
        shift = UInt64(64 - bits)
    }

    @inline(__always) private func home(_ id: Int64) -> Int {
        Int(truncatingIfNeeded: (UInt64(bitPattern: id) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// Adds `id`; false when it was present.
    mutating func insert(_ id: Int64) -> Bool {
        if id == .min {
            defer { hasMin = true }
            if !hasMin { count += 1 }
            return !hasMin
        }
        let mask = table.count - 1
        var i = home(id)
        while table[i] != .min {
            if table[i] == id { return false }
            i = (i + 1) & mask
        }
        table[i] = id
        count += 1
        return true
    }

    func contains(_ id: Int64) -> Bool {
        if id == .min { return hasMin }
        let mask = table.count - 1
        var i = home(id)
        while table[i] != .min {
            if table[i] == id { return true }
            i = (i + 1) & mask
        }
        return false
    }

    var elements: [Int64] { table.filter { $0 != .min } + (hasMin ? [.min] : []) }
}
