// The stored form of an HNSW index: a header (`metaBytes()`) plus one record per slot
// (`nodeRecord(slot:)`), written incrementally through `dirtySlots`, and the loader that
// rebuilds the graph from them without running construction again.
//
// Header, version 1 (60 bytes, little-endian):
//   "M3HN"  u16 version  u8 metric (1 = inner product)  u8 reserved (0)
//   u32 dimension  u32 M  u32 efConstruction  u32 efSearch
//   u64 seed  u64 level-generator state
//   u32 slots  u32 live  u32 deleted  i32 entry point (−1: none)  i32 max level (−1: none)
//
// Node record bytes, version 1 (the record's id and slot are stored beside them):
//   u8 state (0 live, 1 deleted, 2 free)  u8 level L
//   for each layer 0…L: u16 count, then count × u32 neighbour slot
// A free slot is [2, 0, 0, 0]. The vector of a slot is not in the record; the caller
// stores it (by id) and hands it back to the loader.
//
// The first layer-0 link of a node is its parent in the spanning tree when that node links
// back (HNSWIndex+Connectivity.swift); files written before the tree existed load too, and
// the next change repairs their tree. The graph's vector encoding is not stored: a graph
// loads under either.

/// One slot of a stored HNSW graph: who is in it and whom it links to.
public struct HNSWNodeRecord: Equatable, Sendable {
    /// 0 ..< the header's slot count.
    public var slot: Int
    /// The caller's id (0 for a free slot). Ids of deleted slots may repeat.
    public var id: Int64
    /// State, level and links (layout in HNSWIndex+Persistence.swift).
    public var bytes: [UInt8]

    public init(slot: Int, id: Int64, bytes: [UInt8]) {
        self.slot = slot
        self.id = id
        self.bytes = bytes
    }

    /// The slot's state, read from the bytes (nil if they are too short or the code unknown).
    /// A writer can skip storing a vector for a `.free` slot.
    public var state: HNSWIndex.SlotState? { bytes.first.flatMap(HNSWIndex.SlotState.init(rawValue:)) }

    /// The node's top layer, read from the bytes (nil if they are too short).
    public var level: Int? { bytes.count >= 2 ? Int(bytes[1]) : nil }
}

extension HNSWIndex {
    static let metaMagic: [UInt8] = Array("M3HN".utf8)
    static let formatVersion: UInt16 = 1

    /// Slots changed since the last `clearDirty()` (ascending): write their `nodeRecord`s,
    /// and `metaBytes()`, to persist the changes.
    public var dirtySlots: [Int] { (0..<slotCount).filter { dirtyFlags[$0] != 0 } }

    /// Forgets the dirty set, after the caller has persisted it.
    public func clearDirty() { dirtyFlags.update(repeating: 0, count: slotCount) }

    /// The header: parameters, counts, entry point and level-generator state. It changes
    /// with every insert, so write it with every batch of node records.
    public func metaBytes() -> [UInt8] {
        var w = ByteWriter(capacity: 60)
        w.raw(Self.metaMagic)
        w.u16(Self.formatVersion)
        w.u8(metric.code)
        w.u8(0)
        w.u32(UInt32(dim))
        w.u32(UInt32(maxM))
        w.u32(UInt32(parameters.efConstruction))
        w.u32(UInt32(efSearch))
        w.u64(parameters.seed)
        w.u64(rng.state)
        w.u32(UInt32(slotCount))
        w.u32(UInt32(liveCount))
        w.u32(UInt32(tombstones))
        w.i32(entryPoint)
        w.i32(maxLevel)
        return w.bytes
    }

    /// The record of one slot. Precondition: 0 ≤ slot < `slotCount`.
    public func nodeRecord(slot: Int) -> HNSWNodeRecord {
        precondition(slot >= 0 && slot < slotCount, "slot \(slot) out of range 0..<\(slotCount)")
        let s = UInt32(slot)
        let level = Int(levels[slot])
        var w = ByteWriter(capacity: 2 + (level + 1) * 2 + (maxM0 + level * maxM) * 4)
        w.u8(states[slot])
        w.u8(UInt8(level))
        for l in 0...level {
            let p = linkList(s, l)
            w.u16(UInt16(p[0]))
            for i in 0..<Int(p[0]) { w.u32(p[1 + i]) }
        }
        return HNSWNodeRecord(slot: slot, id: ids[slot], bytes: w.bytes)
    }

    /// The graph's copy of the vector in a slot (zeros for a free slot; for int8 the unit
    /// vector of the codes). Precondition: slot in range.
    public func vector(slot: Int) -> [Float] {
        precondition(slot >= 0 && slot < slotCount, "slot \(slot) out of range 0..<\(slotCount)")
        return codec.decode(row(UInt32(slot)))
    }

    /// Rebuilds an index from its header and every slot's record and vector, in any order,
    /// checking everything: the header's fields and counts, each record's layout, slot and
    /// link ranges, each vector's size, finiteness and norm, and finally the structural
    /// invariants of `checkIntegrity()` (except reachability). Nothing is rebuilt.
    ///
    ///     var loader = try HNSWIndex.Loader(meta: metaBlob, encoding: .int8)
    ///     for row in rows { try loader.add(row.record, codes: row.int8Codes) }   // or vector: [Float]
    ///     let index = try loader.finish()
    ///
    /// An int8 graph can load straight from stored int8 codes (no float vector is ever
    /// made); they are then its exact vectors, as far as rescoring bounds go.
    ///
    /// Every method throws `IndexError.corrupt` naming the header or slot at fault.
    public struct Loader: ~Copyable {
        // Internal, not private: the image loader (HNSWIndex+Image.swift) fills the same index.
        let index: HNSWIndex
        var seen: [Bool] = []
        var recordsAdded = 0
        /// One encoded row, filled and checked before the index is touched.
        private var spareRow: [UInt8] = []
        let expectedSlots: Int
        let expectedLive: Int
        let expectedDeleted: Int
        private let expectedEntry: Int32
        let expectedMaxLevel: Int32

        /// Reads the header; the graph will hold its vectors as `encoding` says. Throws
        /// `.corrupt(what: "HNSW header", …)`.
        public init(meta: [UInt8], encoding: VectorEncoding = .float32) throws(IndexError) {
            var r = ByteReader(meta, what: "HNSW header")
            try r.magic(HNSWIndex.metaMagic, "magic")
            let version = try r.u16("format version")
            guard version == HNSWIndex.formatVersion else {
                throw r.fail("format version \(version); this build reads version \(HNSWIndex.formatVersion)")
            }
            let metricCode = try r.u8("metric")
            guard Metric.from(code: metricCode) != nil else { throw r.fail("unknown metric code \(metricCode)") }
            _ = try r.u8("reserved")
            let dim = try r.u32("dimension"), m = try r.u32("M")
            let efC = try r.u32("efConstruction"), efS = try r.u32("efSearch")
            let seed = try r.u64("seed"), rngState = try r.u64("level-generator state")
            let slots = try r.u32("slot count"), live = try r.u32("live count"), deleted = try r.u32("deleted count")
            let entry = try r.i32("entry point"), maxLevel = try r.i32("max level")
            try r.expectEnd()

            // Bound the sizes before they reach allocations.
            guard dim >= 1 && dim <= 1 << 16 else { throw r.fail("dimension \(dim) outside 1…65536") }
            guard slots <= UInt32(HNSWIndex.slotLimit) else { throw r.fail("slot count \(slots) over \(HNSWIndex.slotLimit)") }
            guard UInt64(live) + UInt64(deleted) <= UInt64(slots) else {
                throw r.fail("live \(live) + deleted \(deleted) exceed \(slots) slots")
            }
            guard (-1...Int32(HNSWIndex.levelLimit)).contains(maxLevel) else { throw r.fail("max level \(maxLevel) outside −1…\(HNSWIndex.levelLimit)") }
            guard entry >= -1 && Int64(entry) < Int64(slots) else { throw r.fail("entry point \(entry) outside −1..<\(slots)") }
            guard (entry == -1) == (maxLevel == -1) else { throw r.fail("entry point \(entry) and max level \(maxLevel) disagree") }
            guard m <= UInt32(HNSWIndex.mLimit), efC <= 1 << 20, efS <= 1 << 20 else {
                throw r.fail("M \(m), efConstruction \(efC) or efSearch \(efS) out of range")
            }
            let params = Parameters(dimension: Int(dim), m: Int(m), efConstruction: Int(efC), efSearch: Int(efS), seed: seed,
                                    encoding: encoding)
            do {
                index = try HNSWIndex(parameters: params)
            } catch {
                throw .corrupt(what: "HNSW header", detail: error.description)
            }
            index.rng = SplitMix64(seed: rngState)
            expectedSlots = Int(slots)
            expectedLive = Int(live)
            expectedDeleted = Int(deleted)
            expectedEntry = entry
            expectedMaxLevel = maxLevel
        }

        /// Makes room for `slots` slots at once (at most the header's slot count), so the
        /// graph's buffers are not regrown and copied while records arrive: the doubling
        /// copies and page faults were a sixth of an open at 100k chunks. `slots` should be
        /// the number of records actually stored, so a header that claims more slots than
        /// the file holds cannot make this allocate for them.
        public mutating func reserve(slots: Int) {
            let n = Swift.max(0, Swift.min(slots, expectedSlots))
            index.reserve(n, populate: true)
            index.upperLinks.reserveCapacity(n)
            index.levels.reserveCapacity(n)
            index.ids.reserveCapacity(n)
            index.slotOfID.reserveCapacity(n)  // no rehashing while 100k ids arrive
        }

        /// Adds one slot's record and vector. A free slot's vector may be empty.
        public mutating func add(_ record: HNSWNodeRecord, vector: [Float]) throws(IndexError) {
            let index = self.index
            try vector.withUnsafeBufferPointer { (v) throws(IndexError) in
                try add(record, payloadCount: v.count, unit: "floats") { (row) throws(IndexError) in
                    try validateVector(v, dimension: index.dim)
                    try index.validateNorm(v.baseAddress!)
                    _ = index.codec.encodeRow(v.baseAddress!, into: row)
                }
            }
        }

        /// Adds one slot's record and its vector as int8 codes (`dimension` signed bytes, the
        /// store's int8 dense layout without its scale, which cosine does not need). A free
        /// slot's codes may be empty.
        public mutating func add(_ record: HNSWNodeRecord, codes: UnsafeRawBufferPointer) throws(IndexError) {
            let index = self.index
            try add(record, payloadCount: codes.count, unit: "bytes") { (row) throws(IndexError) in
                guard codes.count == index.dim else { throw .dimensionMismatch(expected: index.dim, actual: codes.count) }
                guard index.codec.encodeRow(codes: codes.baseAddress!, into: row) else {
                    throw .notNormalized(norm: 0)
                }
            }
        }

        /// Parses the record fully, then encodes the vector into a spare row (`encode` throws
        /// if it is bad), and only then touches the index.
        private mutating func add(_ record: HNSWNodeRecord, payloadCount: Int, unit: String,
                                  encode: (UnsafeMutableRawPointer) throws(IndexError) -> Void) throws(IndexError) {
            // Formatted only for an error (one string per record was a visible part of an open).
            let slotNumber = record.slot
            func what() -> String { "HNSW node slot \(slotNumber)" }
            guard record.slot >= 0 && record.slot < expectedSlots else {
                throw .corrupt(what: what(), detail: "slot outside 0..<\(expectedSlots) (header's slot count)")
            }
            let slot = record.slot
            if slot >= seen.count { seen += [Bool](repeating: false, count: slot + 1 - seen.count) }
            guard !seen[slot] else { throw .corrupt(what: what(), detail: "slot appears twice") }

            var r = ByteReader(record.bytes, what: what())
            let stateCode = try r.u8("state")
            guard let state = SlotState(rawValue: stateCode) else { throw r.fail("unknown state \(stateCode)") }
            let level = Int(try r.u8("level"))
            guard level <= Int(expectedMaxLevel) || (state == .free && level == 0) else {
                throw r.fail("level \(level) above the header's max level \(expectedMaxLevel)")
            }
            var lists: [[UInt32]] = []
            for l in 0...level {
                let n = Int(try r.u16("layer \(l) link count"))
                guard n <= index.cap(level: l) else { throw r.fail("\(n) links on layer \(l) (max \(index.cap(level: l)))") }
                var list = [UInt32]()
                list.reserveCapacity(n)
                for _ in 0..<n {
                    let x = try r.u32("layer \(l) link")
                    guard Int(x) < expectedSlots else { throw r.fail("layer \(l) links to slot \(x) ≥ \(expectedSlots) slots") }
                    list.append(x)
                }
                lists.append(list)
            }
            try r.expectEnd()
            if spareRow.count < index.codec.rowBytes { spareRow = [UInt8](repeating: 0, count: index.codec.rowBytes) }
            if state == .free {
                guard level == 0, lists[0].isEmpty else { throw r.fail("free slot with a level or links") }
                guard payloadCount == 0 || payloadCount == index.dim else {
                    throw r.fail("free slot vector has \(payloadCount) \(unit) (expected 0 or \(index.dim))")
                }
            } else {
                var failure: IndexError?
                spareRow.withUnsafeMutableBytes { b in
                    do throws(IndexError) { try encode(b.baseAddress!) } catch { failure = error }
                }
                if let failure { throw .corrupt(what: what(), detail: "vector for id \(record.id): \(failure.description)") }
            }
            if state == .live {
                guard index.slotOfID[record.id] == nil else { throw r.fail("id \(record.id) is live in two slots") }
            }

            while index.slotCount <= slot { _ = index.appendSlot() }
            let s = UInt32(slot)
            index.states[slot] = state.rawValue
            index.ids[slot] = state == .free ? 0 : record.id
            index.shapeSlot(s, level: level)
            if state != .free {
                spareRow.withUnsafeBytes { index.row(s).copyMemory(from: $0.baseAddress!, byteCount: index.codec.rowBytes) }
            }
            for (l, list) in lists.enumerated() { index.writeList(index.linkList(s, l), list) }
            switch state {
            case .live:
                index.slotOfID[record.id] = s
                index.liveCount += 1
            case .deleted: index.tombstones += 1
            case .free: index.freeSlots.append(s)
            }
            seen[slot] = true
            recordsAdded += 1
        }

        /// Checks that every slot arrived and the graph is consistent; returns the index.
        public consuming func finish() throws(IndexError) -> HNSWIndex {
            guard recordsAdded == expectedSlots else {
                let missing = seen.isEmpty ? recordsAdded : (0..<expectedSlots).first { $0 >= seen.count || !seen[$0] } ?? -1
                throw .corrupt(what: "HNSW index", detail: "\(recordsAdded) of \(expectedSlots) slot records (first missing: slot \(missing))")
            }
            guard index.liveCount == expectedLive, index.tombstones == expectedDeleted else {
                throw .corrupt(what: "HNSW index", detail: "records hold \(index.liveCount) live and \(index.tombstones) deleted "
                    + "items; the header says \(expectedLive) and \(expectedDeleted)")
            }
            index.freeSlots.sort(by: >)
            index.entryPoint = expectedEntry
            index.maxLevel = expectedMaxLevel
            try index.validateStructure { .corrupt(what: "HNSW index", detail: $0) }
            index.deriveTree()
            index.clearDirty()
            return index
        }
    }
}
