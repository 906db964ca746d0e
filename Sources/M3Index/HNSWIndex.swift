import CM3Kernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Approximate nearest-neighbour search over unit vectors by inner product: a Hierarchical
/// Navigable Small World graph (Malkov & Yashunin 2016; the algorithm of hnswlib's
/// `hnswalg.h`, written anew).
///
/// Items carry a caller-chosen `Int64` id (the chunk row id); inside, each lives in a dense
/// slot. Removal leaves a tombstone that searches walk through but never return; `compact()`
/// later relinks around tombstones and frees their slots for reuse.
///
///     let index = try HNSWIndex(parameters: .init(dimension: 1024, encoding: .int8))
///     try index.insert(id: 42, vector: embedding)           // unit-norm [Float]
///     let hits = try index.search(query, k: 10) { id in exactDot(query, id) }  // [IndexHit], best first
///
/// ## Connectivity
/// No input disconnects the graph: layer 0 carries a spanning tree whose edges run both
/// ways and are never pruned (HNSWIndex+Connectivity.swift), so every node reaches every
/// other one whatever the data, duplicates included. A vector identical to one already in
/// the graph joins as a level-0 leaf of that one instead of crowding its neighbours' lists.
///
/// ## Vectors
/// The graph keeps its own copy of each vector, as float32 or as int8 codes
/// (`Parameters.encoding`); with int8 it needs a quarter of the memory and its scores are
/// approximate, so callers rescore the candidates from their exact vectors.
///
/// ## Persistence
/// The graph is stored by the caller (one row per slot plus a header): after a batch of
/// changes write `metaBytes()` and `nodeRecord(slot:)` for each slot in `dirtySlots`, then
/// `clearDirty()`. `HNSWIndex.Loader` rebuilds the graph from those rows without re-running
/// construction. Vectors are not in the records; the caller stores them and hands them back
/// to the loader (as floats, or as the int8 codes it stores). A graph image
/// (`imageManifest`, `imageSegment`, `Loader.addImageSegment`; HNSWIndex+Image.swift) holds
/// the whole graph, rows included, in a few large parts that load by bulk copies.
///
/// ## Concurrency
/// One writer, many readers, with the lock in the caller: `search`, `nodeRecord`,
/// `metaBytes`, `vector` and `checkIntegrity` only read the graph and may run concurrently
/// with each other (each search borrows its own scratch memory from an internally locked
/// pool); `insert`, `insertBatch`, `remove`, `compact`, `clearDirty` and setting `efSearch`
/// mutate it and need exclusive access. A reader–writer lock (e.g. `pthread_rwlock_t`)
/// around the index, read-locked for searches and write-locked for changes, is enough.
/// To let searches run during changes instead, make them on `copy()` and hand readers the
/// copy when done (M3Search's published snapshots do this).
public final class HNSWIndex: @unchecked Sendable {
    /// Construction and search parameters.
    public struct Parameters: Equatable, Sendable {
        /// Vector length (1024 for BGE-M3 dense).
        public var dimension: Int
        /// Links per node on the upper layers; layer 0 allows 2·M.
        public var m: Int
        /// Candidate-list size while inserting (higher: better graph, slower build).
        public var efConstruction: Int
        /// Default candidate-list size while searching (raised to k when k is larger).
        public var efSearch: Int
        /// Seeds the level generator, so the same inserts in the same order build the same graph.
        public var seed: UInt64
        /// How the graph holds the vectors it traverses with (not persisted: a stored graph
        /// loads under either encoding).
        public var encoding: VectorEncoding

        public init(dimension: Int, m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64,
                    seed: UInt64 = 0x4D33_5345_4152_4348, encoding: VectorEncoding = .float32) {
            self.dimension = dimension
            self.m = m
            self.efConstruction = efConstruction
            self.efSearch = efSearch
            self.seed = seed
            self.encoding = encoding
        }
    }

    /// What a slot holds. Raw values are persisted.
    public enum SlotState: UInt8, Sendable {
        /// A searchable item.
        case live = 0
        /// A removed item still linked into the graph (walked through, never returned).
        case deleted = 1
        /// An unused slot (freed by `compact()`); nothing links to it; the next insert takes it.
        case free = 2
    }

    /// Highest layer a node may get (P(level ≥ 16) = M⁻¹⁶: never reached for M ≥ 4 in
    /// practice; it bounds what a stored record may claim).
    static let levelLimit = 16
    /// Largest M accepted (layer-0 lists are 2·M long, and counts are stored in 16 bits).
    static let mLimit = 1024
    /// Slots must fit the header's Int32 entry point.
    static let slotLimit = Int(Int32.max)
    /// `parent0` of a node outside the spanning tree's parent relation (the root, free slots).
    static let noParent = UInt32.max

    public let parameters: Parameters
    /// Default ef for `search` when none is given.
    public var efSearch: Int

    /// What the scores mean (persisted in the header).
    let metric = Metric.innerProduct
    /// Row layout and score functions of the encoding.
    let codec: VectorRows
    let dim: Int
    /// Max links on layers ≥ 1 (M) and on layer 0 (2·M).
    let maxM: Int
    package let maxM0: Int
    /// Tree children a node takes when a new node picks its parent; a node keeps at most
    /// 1 + childLimit reserved links, so its list always has room for chosen ones.
    let childLimit: Int
    /// mL = 1/ln M: level = ⌊−ln U · mL⌋ gives P(level ≥ l) = M^−l.
    let levelMult: Double

    // Storage. Slots 0..<slotCount are in use; the buffers hold `capacity` slots.
    // (`package` members are test hooks: the tests break invariants on purpose.)
    /// Slots in use (live + deleted + free); record slots run 0..<slotCount.
    public internal(set) var slotCount = 0
    var capacity = 0
    /// capacity × codec.rowBytes; row s is the vector of slot s.
    var rows: UnsafeMutableRawPointer
    /// capacity × (maxM0 + 1): for slot s, [count, n_1 … n_maxM0] of its layer-0 links.
    package var links0: UnsafeMutablePointer<UInt32>
    /// How `rows` and `links0` were allocated (`GraphBuffer`: the mapped length, or 0).
    var rowsMapped = 0
    var links0Mapped = 0
    /// capacity states (SlotState raw values).
    var states: UnsafeMutablePointer<UInt8>
    /// capacity: each node's parent in the layer-0 spanning tree, or `noParent`. A parent is
    /// always the first entry of the node's layer-0 list and lists the node in turn.
    package var parent0: UnsafeMutablePointer<UInt32>
    /// capacity: how many nodes have this one as parent.
    var childCount: UnsafeMutablePointer<UInt16>
    /// capacity: 1 for a copy hung below a node with the same vector (a twin; see
    /// HNSWIndex+Connectivity.swift). Derived from the lists, so not stored.
    var twinFlags: UnsafeMutablePointer<UInt8>
    /// capacity: 1 where the slot's record changed since `clearDirty()` (bytes, so the
    /// construction threads can mark slots without sharing a set).
    var dirtyFlags: UnsafeMutablePointer<UInt8>
    /// Per slot: nil for level 0, else layers 1…level, each [count, n_1 … n_M]
    /// (level × (maxM + 1) UInt32s, allocated per node like hnswlib's linkLists_).
    var upperLinks: [UnsafeMutablePointer<UInt32>?] = []
    package var levels: [Int32] = []
    var ids: [Int64] = []
    /// Live ids only; a removed id can be inserted again (into another slot).
    var slotOfID: [Int64: UInt32] = [:]
    /// Free slots, sorted descending so popLast takes the lowest.
    var freeSlots: [UInt32] = []
    var liveCount = 0
    var tombstones = 0
    /// The node every search starts from (highest level); −1 when no node is linked.
    package var entryPoint: Int32 = -1
    package var maxLevel: Int32 = -1
    var rng: SplitMix64
    /// The spanning tree has more than one root (a graph loaded from a file written before
    /// the tree existed, or damaged): the next change reattaches them first (`connect()`).
    package internal(set) var treeNeedsRepair = false

    let scratchPool = ScratchPool()

    /// Creates an empty index. Throws `.invalidParameter` for dimension outside 1…65536, M
    /// outside 2…1024, efConstruction < 1 or efSearch < 1.
    public init(parameters p: Parameters) throws(IndexError) {
        guard (1...(1 << 16)).contains(p.dimension) else {
            throw .invalidParameter(name: "dimension", value: p.dimension, allowed: "1…65536")
        }
        guard (2...Self.mLimit).contains(p.m) else { throw .invalidParameter(name: "M", value: p.m, allowed: "2…\(Self.mLimit)") }
        guard p.efConstruction >= 1 else { throw .invalidParameter(name: "efConstruction", value: p.efConstruction, allowed: "≥ 1") }
        guard p.efSearch >= 1 else { throw .invalidParameter(name: "efSearch", value: p.efSearch, allowed: "≥ 1") }
        parameters = p
        efSearch = p.efSearch
        codec = VectorRows(encoding: p.encoding, dimension: p.dimension)
        dim = p.dimension
        maxM = p.m
        maxM0 = 2 * p.m
        childLimit = Swift.min(4, maxM0 - 2)
        levelMult = 1 / log(Double(p.m))
        rng = SplitMix64(seed: p.seed)
        rows = .allocate(byteCount: 0, alignment: 64)
        links0 = UnsafeMutableRawPointer.allocate(byteCount: 0, alignment: 64).bindMemory(to: UInt32.self, capacity: 0)
        states = .allocate(capacity: 0)
        parent0 = .allocate(capacity: 0)
        childCount = .allocate(capacity: 0)
        twinFlags = .allocate(capacity: 0)
        dirtyFlags = .allocate(capacity: 0)
    }

    deinit {
        for p in upperLinks { p?.deallocate() }
        GraphBuffer.deallocate(rows, mapped: rowsMapped)
        GraphBuffer.deallocate(UnsafeMutableRawPointer(links0), mapped: links0Mapped)
        states.deallocate()
        parent0.deallocate()
        childCount.deallocate()
        twinFlags.deallocate()
        dirtyFlags.deallocate()
    }

    // MARK: Counts

    /// Searchable items.
    public var count: Int { liveCount }
    /// Removed items still in the graph; `compact()` frees them.
    public var deletedCount: Int { tombstones }
    /// How the graph holds its vectors.
    public var encoding: VectorEncoding { codec.encoding }

    public func contains(id: Int64) -> Bool { slotOfID[id] != nil }

    /// The graph's copy of a live id's vector, or nil: as inserted for float32, the unit
    /// vector of its codes for int8.
    public func vector(forID id: Int64) -> [Float]? {
        guard let s = slotOfID[id] else { return nil }
        return codec.decode(row(s))
    }

    /// `query` · the graph's copy of a live id's vector (the vector `vector(forID:)`
    /// returns), computed on the row without decoding it; nil for an id not in the graph or
    /// a query of the wrong size. For an int8 graph loaded from the store's int8 codes this
    /// is the exact score of the stored vector: the rescorer to hand to `search`.
    public func score(_ query: UnsafeBufferPointer<Float>, id: Int64) -> Float? {
        guard query.count == dim, let s = slotOfID[id] else { return nil }
        return codec.exactScore(query.baseAddress!, row(s))
    }

    /// Bytes of memory the graph holds (vectors, links, per-slot arrays, the id map), for
    /// capacity planning; the process's resident size is what the OS reports.
    public var memoryBytes: Int {
        let perSlot = codec.rowBytes + (maxM0 + 1) * 4 + 1 + 4 + 2 + 1 + 1
        var upper = 0
        for s in 0..<slotCount where levels[s] > 0 { upper += Int(levels[s]) * (maxM + 1) * 4 }
        let arrays = slotCount * (8 + 4 + 8)  // ids, levels, upperLinks pointers
        let idMap = slotOfID.capacity * 16  // key, value and hash-table slack, roughly
        return capacity * perSlot + upper + arrays + idMap + freeSlots.capacity * 4
    }

    // MARK: Storage helpers

    @inline(__always) func row(_ slot: UInt32) -> UnsafeMutableRawPointer { rows + Int(slot) * codec.rowBytes }
    @inline(__always) func isLive(_ slot: UInt32) -> Bool { states[Int(slot)] == SlotState.live.rawValue }
    @inline(__always) func isFree(_ slot: UInt32) -> Bool { states[Int(slot)] == SlotState.free.rawValue }
    /// Row × row similarity (the heuristic's and pruning's score).
    @inline(__always) func scoreRows(_ a: UInt32, _ b: UInt32) -> Float { codec.scoreRows(row(a), row(b), dim) }
    @inline(__always) func cap(level: Int) -> Int { level == 0 ? maxM0 : maxM }
    @inline(__always) func markDirty(_ slot: UInt32) { dirtyFlags[Int(slot)] = 1 }

    /// Pointer to [count, n_1 …] of `slot` at `level`. Valid until the next mutation.
    @inline(__always)
    func linkList(_ slot: UInt32, _ level: Int) -> UnsafeMutablePointer<UInt32> {
        if level == 0 { return links0 + Int(slot) * (maxM0 + 1) }
        return upperLinks[Int(slot)]! + (level - 1) * (maxM + 1)
    }

    /// The links of `slot` at `level` as an array (for code off the hot path).
    package func neighbors(_ slot: UInt32, _ level: Int) -> [UInt32] {
        let p = linkList(slot, level)
        return Array(UnsafeBufferPointer(start: p + 1, count: Int(p[0])))
    }

    /// Replaces a list. Test hook and serial paths; the tree bookkeeping is the caller's.
    package func setNeighbors(_ slot: UInt32, _ level: Int, _ list: [UInt32]) {
        precondition(list.count <= cap(level: level))
        writeList(linkList(slot, level), list)
        markDirty(slot)
    }

    @inline(__always)
    func writeList(_ p: UnsafeMutablePointer<UInt32>, _ list: [UInt32]) {
        p[0] = UInt32(list.count)
        for (i, n) in list.enumerated() { p[1 + i] = n }
    }

    /// Grows the buffers to hold at least `needed` slots (doubling). `populate`: the caller
    /// fills exactly `needed` slots at once (a loader), so the large buffers are faulted in
    /// ahead (`GraphBuffer`).
    func reserve(_ needed: Int, populate: Bool = false) {
        guard needed > capacity else { return }
        let newCap = Swift.max(needed, capacity * 2, 16)
        func grow<T>(_ p: inout UnsafeMutablePointer<T>, stride: Int) {
            let q = UnsafeMutablePointer<T>.allocate(capacity: newCap * stride)
            q.moveInitialize(from: p, count: slotCount * stride)
            p.deallocate()
            p = q
        }
        let populate = populate && newCap == needed
        let r = GraphBuffer.allocate(byteCount: newCap * codec.rowBytes, populate: populate)
        r.pointer.copyMemory(from: rows, byteCount: slotCount * codec.rowBytes)
        GraphBuffer.deallocate(rows, mapped: rowsMapped)
        (rows, rowsMapped) = r
        let l = GraphBuffer.allocate(byteCount: newCap * (maxM0 + 1) * MemoryLayout<UInt32>.stride, populate: populate)
        let l0 = l.pointer.bindMemory(to: UInt32.self, capacity: newCap * (maxM0 + 1))
        l0.moveInitialize(from: links0, count: slotCount * (maxM0 + 1))
        GraphBuffer.deallocate(UnsafeMutableRawPointer(links0), mapped: links0Mapped)
        (links0, links0Mapped) = (l0, l.mapped)
        grow(&states, stride: 1)
        grow(&parent0, stride: 1)
        grow(&childCount, stride: 1)
        grow(&twinFlags, stride: 1)
        grow(&dirtyFlags, stride: 1)
        capacity = newCap
    }

    /// Appends a new slot (state free, level 0, no links) and returns it.
    func appendSlot() -> UInt32 {
        reserve(slotCount + 1)
        let slot = UInt32(slotCount)
        slotCount += 1
        row(slot).initializeMemory(as: UInt8.self, repeating: 0, count: codec.rowBytes)
        (links0 + Int(slot) * (maxM0 + 1)).initialize(repeating: 0, count: maxM0 + 1)
        states[Int(slot)] = SlotState.free.rawValue
        parent0[Int(slot)] = Self.noParent
        childCount[Int(slot)] = 0
        twinFlags[Int(slot)] = 0
        dirtyFlags[Int(slot)] = 0
        upperLinks.append(nil)
        levels.append(0)
        ids.append(0)
        return slot
    }

    /// Gives `slot` a level and empty link lists on layers 0…level.
    func shapeSlot(_ slot: UInt32, level: Int) {
        levels[Int(slot)] = Int32(level)
        links0[Int(slot) * (maxM0 + 1)] = 0
        upperLinks[Int(slot)]?.deallocate()
        upperLinks[Int(slot)] = nil
        if level > 0 {
            let p = UnsafeMutablePointer<UInt32>.allocate(capacity: level * (maxM + 1))
            p.initialize(repeating: 0, count: level * (maxM + 1))
            upperLinks[Int(slot)] = p
        }
        markDirty(slot)
    }

    /// Draws a level: ⌊−ln U · mL⌋, U uniform in (0, 1].
    func randomLevel() -> Int {
        let u = (Double(rng.next() >> 11) + 1) * 0x1p-53
        let level = Int(-log(u) * levelMult)
        return Swift.min(level, Self.levelLimit)
    }

    // MARK: Insert

    /// Adds a unit vector under a caller-chosen id. A removed id may be inserted again.
    ///
    /// Throws `.duplicateID` if the id is live, `.dimensionMismatch`, `.nonFiniteValue`,
    /// `.notNormalized` (|‖v‖² − 1| > 2e-3) or `.capacityExceeded`.
    public func insert(id: Int64, vector: [Float]) throws(IndexError) {
        try vector.withUnsafeBufferPointer { (v) throws(IndexError) in try insert(id: id, vector: v) }
    }

    public func insert(id: Int64, vector v: UnsafeBufferPointer<Float>) throws(IndexError) {
        guard slotOfID[id] == nil else { throw .duplicateID(id) }
        try validateVector(v, dimension: dim)
        try validateNorm(v.baseAddress!)
        try prepareForInserts(count: 1)

        let (slot, level) = claimSlot(id: id, vector: v.baseAddress!)
        guard entryPoint >= 0 else {
            entryPoint = Int32(slot)
            maxLevel = Int32(level)
            return
        }
        let duplicate = scratchPool.withScratch(slots: slotCount) { scratch in
            link(slot, level: level, scratch: scratch, locks: nil)
        }
        if duplicate { dropUpperLayers(slot) }
    }

    /// What every insert path does first: start over when only tombstones are left, bring a
    /// loaded graph's spanning tree up to date, and check there is room.
    func prepareForInserts(count: Int) throws(IndexError) {
        // Only tombstones left: nothing live to link to; start over in the freed slots.
        if liveCount == 0 && tombstones > 0 { compact() }
        if treeNeedsRepair { connect() }
        guard slotCount - freeSlots.count + count <= Self.slotLimit else { throw .capacityExceeded(limit: Self.slotLimit) }
    }

    /// Takes a free slot (or a new one) for `id`, stores its vector, draws its level and
    /// marks it live and dirty; linking it into the graph is the caller's work.
    func claimSlot(id: Int64, vector: UnsafePointer<Float>) -> (slot: UInt32, level: Int) {
        let slot = freeSlots.popLast() ?? appendSlot()
        let level = randomLevel()
        // A unit vector's largest component quantises to ±127, so encoding cannot fail here.
        _ = codec.encodeRow(vector, into: row(slot))
        states[Int(slot)] = SlotState.live.rawValue
        ids[Int(slot)] = id
        parent0[Int(slot)] = Self.noParent
        childCount[Int(slot)] = 0
        twinFlags[Int(slot)] = 0
        shapeSlot(slot, level: level)
        slotOfID[id] = slot
        liveCount += 1
        return (slot, level)
    }

    func validateNorm(_ v: UnsafePointer<Float>) throws(IndexError) {
        let n2 = m3ix_dot_f32(v, v, dim)
        guard abs(n2 - 1) <= 2e-3 else { throw .notNormalized(norm: n2.squareRoot()) }
    }

    /// Connects `slot` (already holding its vector and level) into the graph: greedy descent
    /// to its top layer, an efConstruction search on each of its layers, then the neighbour
    /// heuristic and back-links (hnswlib's addPoint + mutuallyConnectNewElement), and on
    /// layer 0 a parent in the spanning tree. Returns true when the vector is identical to
    /// one already in the graph: then it is linked as that one's leaf on layer 0 only, and the
    /// caller drops its upper layers (`dropUpperLayers`).
    ///
    /// With `locks` (parallel construction, HNSWIndex+Batch.swift) every list is read and
    /// written under its node's lock and `locks[slotCount]` guards the entry point.
    func link(_ x: UInt32, level: Int, scratch: SearchScratch, locks: UnsafeMutablePointer<UInt8>?) -> Bool {
        let q = codec.query(fromRow: row(x), buffer: scratch.queryBuffer(bytes: codec.rowBytes))
        var cur: UInt32, top: Int
        if let locks { m3ix_spin_lock(locks + slotCount) }
        cur = UInt32(entryPoint)
        top = Int(maxLevel)
        if let locks { m3ix_spin_unlock(locks + slotCount) }
        if level < top {
            cur = greedyDescent(q, from: cur, topLevel: top, downTo: level + 1, locks: locks, listCopy: scratch.listCopy)
        }
        // Search every layer before linking any, so a twin found on the way is known before
        // anything links to x.
        var found = [[UInt64]](repeating: [], count: Swift.min(level, top) + 1)
        var twin: UInt32?
        var l = Swift.min(level, top)
        while l >= 0 {
            let f = searchLayer(q, entry: cur, ef: parameters.efConstruction, level: l, scratch: scratch,
                                excluding: x, locks: locks)
            if let best = f.first { cur = keySlot(best) }
            if twin == nil, let t = identicalNode(to: x, in: f) {
                twin = t
                if l > 0 {  // only layer 0 matters for a twin: search it from there
                    cur = t
                    l = 0
                    continue
                }
            }
            found[l] = f
            l -= 1
        }
        if let twin {
            linkTwin(x, of: twin, found: found[0], locks: locks)
            return true
        }
        for l in 0...Swift.min(level, top) {
            var selected = selectNeighbors(found[l], max: maxM)
            if l == 0 {
                let p = adoptParent(for: x, candidates: found[0], fallback: cur, locks: locks)
                if let i = selected.firstIndex(of: p) { selected.remove(at: i) }
                selected.insert(p, at: 0)
            }
            if let locks { m3ix_spin_lock(locks + Int(x)) }
            writeList(linkList(x, l), selected)
            markDirty(x)
            if let locks { m3ix_spin_unlock(locks + Int(x)) }
            for n in selected { addLink(from: n, to: x, level: l, locks: locks) }
        }
        if let locks { m3ix_spin_lock(locks + slotCount) }
        if level > Int(maxLevel) {
            entryPoint = Int32(x)
            maxLevel = Int32(level)
            // The tree's root follows the entry point; the batch re-roots after its threads.
            if locks == nil { makeRoot(x) }
        }
        if let locks { m3ix_spin_unlock(locks + slotCount) }
        return false
    }

    /// Adds the link n → target on `level`. When n's list is full, the heuristic chooses
    /// among its links plus the new one (so target may be left out), always keeping n's
    /// reserved tree links. With `locks`, under n's lock.
    func addLink(from n: UInt32, to target: UInt32, level: Int, locks: UnsafeMutablePointer<UInt8>?) {
        if let locks { m3ix_spin_lock(locks + Int(n)) }
        defer { if let locks { m3ix_spin_unlock(locks + Int(n)) } }
        let limit = cap(level: level)
        let p = linkList(n, level)
        let count = Int(p[0])
        for i in 0..<count where p[1 + i] == target { return }
        if count < limit {
            p[1 + count] = target
            p[0] = UInt32(count + 1)
        } else {
            writeList(p, prunedNeighbors(of: n, level: level, list: p, adding: target))
        }
        markDirty(n)
    }

    /// n's full list `p` plus `extra`, cut back to its cap: on layer 0 n's parent (first)
    /// and its tree children stay, then the heuristic fills the rest, closest first.
    func prunedNeighbors(of n: UInt32, level: Int, list p: UnsafeMutablePointer<UInt32>, adding extra: UInt32) -> [UInt32] {
        let count = Int(p[0])
        var reserved: [UInt32] = []
        var keys: [UInt64] = []
        keys.reserveCapacity(count + 1)
        for i in 0...count {
            let x = i < count ? p[1 + i] : extra
            if level == 0 && (parent0[Int(x)] == n || parent0[Int(n)] == x) {
                if parent0[Int(n)] == x { reserved.insert(x, at: 0) } else { reserved.append(x) }
            } else {
                keys.append(packKey(scoreRows(n, x), x))
            }
        }
        keys.sort(by: >)
        return selectNeighbors(keys, max: cap(level: level), keeping: reserved)
    }

    /// hnswlib's getNeighborsByHeuristic2. `candidates` are keys scored against the base
    /// node, best first. A candidate is kept only if it is closer to the base than to every
    /// node already kept; this spreads links over directions instead of crowding them into
    /// one cluster, which keeps clusters connected to each other. A tie counts as closer to
    /// the kept node, so of identical vectors only the first is kept (hnswlib keeps them all
    /// and fills lists with copies of one point). `keeping` nodes come first and count as kept.
    func selectNeighbors(_ candidates: [UInt64], max m: Int, keeping: [UInt32] = []) -> [UInt32] {
        if candidates.count + keeping.count <= m { return keeping + candidates.map(keySlot) }
        let rows = self.rows, rowBytes = codec.rowBytes, dim = self.dim, scoreFn = codec.scoreRows
        var selected = keeping
        selected.reserveCapacity(m)
        for key in candidates {
            if selected.count >= m { break }
            let c = keySlot(key)
            let toBase = keyScore(key)
            let pc = rows + Int(c) * rowBytes
            var keep = true
            var j = 0
            while j < selected.count {
                if scoreFn(pc, rows + Int(selected[j]) * rowBytes, dim) >= toBase {
                    keep = false
                    break
                }
                j += 1
            }
            if keep { selected.append(c) }
        }
        return selected
    }

    // MARK: Search

    /// Greedy walk (ef = 1) from `from` on layers topLevel … downTo, returning the closest node found.
    ///
    /// With `locks` (parallel construction) each list is copied under its node's lock into
    /// `listCopy` (≥ maxM0 + 1 UInt32s) before it is read.
    func greedyDescent(_ q: UnsafeRawPointer, from: UInt32, topLevel: Int, downTo: Int,
                       locks: UnsafeMutablePointer<UInt8>? = nil,
                       listCopy: UnsafeMutablePointer<UInt32>? = nil) -> UInt32 {
        let rows = self.rows, rowBytes = codec.rowBytes, dim = self.dim, scoreFn = codec.scoreQuery
        var cur = from
        var curKey = packKey(scoreFn(q, rows + Int(cur) * rowBytes, dim), cur)
        var l = topLevel
        while l >= downTo {
            var changed = true
            while changed {
                changed = false
                var p = linkList(cur, l)
                if let locks, let listCopy { p = copyList(p, lock: locks + Int(cur), into: listCopy) }
                let n = Int(p[0])
                var i = 1
                while i <= n {
                    let c = p[i]
                    let k = packKey(scoreFn(q, rows + Int(c) * rowBytes, dim), c)
                    if k > curKey {
                        curKey = k
                        cur = c
                        changed = true
                    }
                    i += 1
                }
            }
            l -= 1
        }
        return cur
    }

    /// Copies the list at `p` ([count, n_1 …]) into `buffer` under `lock`; returns `buffer`.
    @inline(__always)
    func copyList(_ p: UnsafeMutablePointer<UInt32>, lock: UnsafeMutablePointer<UInt8>,
                  into buffer: UnsafeMutablePointer<UInt32>) -> UnsafeMutablePointer<UInt32> {
        m3ix_spin_lock(lock)
        buffer.update(from: p, count: Int(p[0]) + 1)
        m3ix_spin_unlock(lock)
        return buffer
    }

    /// Best-first search of one layer (hnswlib's searchBaseLayer/ST). Returns up to `ef` keys
    /// of collectable nodes, best first: live, not `excluding` (the node being linked), and
    /// allowed by `filter`. Copies of a vector hung below a node holding it (twins) take no
    /// place in the beam; with `collectTwins` they are returned too, else left out. Other nodes are expanded but not collected; while any exist the
    /// search keeps going until it has `ef` results or runs out of candidates, so it still
    /// finds k results among many tombstones or filtered-out nodes. With a two-hop filter a
    /// node the filter rejects is not scored: its own neighbours are examined instead
    /// (ACORN-1), which reaches sparse allowed nodes without paying for the rest.
    ///
    /// The inner loop reads only locals (pointers, counts, the two heaps): class properties
    /// would cost a dynamic exclusivity check per access in debug builds.
    ///
    /// With `locks` (parallel construction) each list is copied under its node's lock first.
    func searchLayer(_ q: UnsafeRawPointer, entry: UInt32, ef: Int, level: Int,
                     scratch: SearchScratch, excluding: UInt32 = .max,
                     locks: UnsafeMutablePointer<UInt8>? = nil, filter: SlotFilter? = nil,
                     collectTwins: Bool = false) -> [UInt64] {
        scratch.beginSearch(slots: slotCount)
        var twins: [UInt64] = []
        var candidates = scratch.candidates
        var results = scratch.results
        let marks = scratch.marks, epoch = scratch.epoch
        let rows = self.rows, rowBytes = codec.rowBytes, states = self.states, dim = self.dim
        let scoreFn = codec.scoreQuery
        let links0 = self.links0, stride0 = maxM0 + 1, parent0 = self.parent0, twinFlags = self.twinFlags
        let live = SlotState.live.rawValue
        let mustFill = tombstones > 0 || filter != nil
        let twoHop = filter?.twoHop ?? false
        let listCopy = scratch.listCopy
        // The first 4 cache lines: the hardware prefetcher follows the stream from there.
        // (Prefetching all 4 KB of a 1024-d float vector measured slower: it floods the fill buffers.)
        let prefetchBytes = Swift.min(rowBytes, 256)

        @inline(__always) func collectable(_ x: UInt32) -> Bool {
            states[Int(x)] == live && x != excluding && (filter?.allows(x) ?? true)
        }

        /// Gathers `first`, a twin with key `firstKey`, and the twins below it (all with its
        /// score: the same vector), up to ef of them, without a distance computation.
        func gatherTwins(_ first: UInt32, _ firstKey: UInt64) {
            let score = firstKey & 0xFFFF_FFFF_0000_0000
            var stack = [first]
            var gathered = 0
            while let t = stack.popLast(), gathered < ef {
                if collectable(t) {
                    twins.append(score | UInt64(~t))
                    gathered += 1
                }
                let pt = links0 + Int(t) * stride0
                for j in 0..<Int(pt[0]) {
                    let y = pt[1 + j]
                    if marks[Int(y)] != epoch && parent0[Int(y)] == t && twinFlags[Int(y)] != 0 {
                        marks[Int(y)] = epoch
                        stack.append(y)
                    }
                }
            }
        }

        marks[Int(entry)] = epoch
        let entryKey = packKey(scoreFn(q, rows + Int(entry) * rowBytes, dim), entry)
        candidates.push(~entryKey)
        if collectable(entry) { results.push(entryKey) }

        while candidates.count > 0 {
            let ck = ~candidates.popMin()
            if results.count > 0 && ck < results.min && (results.count >= ef || !mustFill) { break }
            let c = keySlot(ck)
            var p = level == 0 ? links0 + Int(c) * stride0 : linkList(c, level)
            if let locks { p = copyList(p, lock: locks + Int(c), into: listCopy) }
            let n = Int(p[0])
            // Rows lie a row apart in memory and far beyond cache for large indexes: start
            // loading the first unvisited neighbour's row, and while scoring one, the next one's.
            var i = 1
            while i <= n && marks[Int(p[i])] == epoch { i += 1 }
            if i <= n { m3ix_prefetch(rows + Int(p[i]) * rowBytes, prefetchBytes) }
            while i <= n {
                let x = p[i]
                i += 1
                if marks[Int(x)] == epoch { continue }
                marks[Int(x)] = epoch
                var j = i
                while j <= n && marks[Int(p[j])] == epoch { j += 1 }
                if j <= n { m3ix_prefetch(rows + Int(p[j]) * rowBytes, prefetchBytes) }
                if level == 0 && twinFlags[Int(x)] != 0 {
                    // A copy hung below a node with the same vector: it adds no direction, so
                    // it takes no place in the beam (a plateau of copies would fill it).
                    // Result-collecting searches gather it and the copies below it.
                    if collectTwins { gatherTwins(x, packKey(scoreFn(q, rows + Int(x) * rowBytes, dim), x)) }
                    continue
                }
                let take = collectable(x)
                if twoHop && !take {
                    // Level 0 only (filtered searches run there): x's neighbours that the
                    // filter allows, scored and queued as if they were c's.
                    let p2 = links0 + Int(x) * stride0
                    let n2 = Int(p2[0])
                    var t = 1
                    while t <= n2 {
                        let y = p2[t]
                        t += 1
                        if marks[Int(y)] == epoch || !collectable(y) || twinFlags[Int(y)] != 0 { continue }
                        marks[Int(y)] = epoch
                        let k = packKey(scoreFn(q, rows + Int(y) * rowBytes, dim), y)
                        if results.count < ef || k > results.min {
                            candidates.push(~k)
                            results.push(k)
                            if results.count > ef { results.popMin() }
                        }
                    }
                    continue
                }
                let k = packKey(scoreFn(q, rows + Int(x) * rowBytes, dim), x)
                if results.count < ef || k > results.min {
                    candidates.push(~k)
                    if take {
                        results.push(k)
                        if results.count > ef { results.popMin() }
                    }
                }
            }
        }

        var out = [UInt64](repeating: 0, count: results.count)
        var j = results.count
        while results.count > 0 {
            j -= 1
            out[j] = results.popMin()
        }
        scratch.candidates = candidates  // keep grown buffers
        scratch.results = results
        if !twins.isEmpty {
            out += twins
            out.sort(by: >)
            if out.count > ef { out.removeLast(out.count - ef) }
        }
        return out
    }

    // MARK: Remove

    /// Marks the item removed (a tombstone): it stays in the graph for routing but is never
    /// returned. Returns false if the id is not live. Its slot becomes reusable after `compact()`.
    @discardableResult
    public func remove(id: Int64) -> Bool {
        guard let slot = slotOfID.removeValue(forKey: id) else { return false }
        states[Int(slot)] = SlotState.deleted.rawValue
        liveCount -= 1
        tombstones += 1
        markDirty(slot)
        return true
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny seeded generator whose whole state is one
/// UInt64, so it persists in the index header and reopened indexes keep drawing the same levels.
package struct SplitMix64: Sendable, Equatable, RandomNumberGenerator {
    package var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
