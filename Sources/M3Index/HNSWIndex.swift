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
///     let index = try HNSWIndex(parameters: .init(dimension: 1024))
///     try index.insert(id: 42, vector: embedding)           // unit-norm [Float]
///     let hits = try index.search(query, k: 10)             // [IndexHit], best first
///
/// ## Persistence
/// The graph is stored by the caller (one row per slot plus a header): after a batch of
/// changes write `metaBytes()` and `nodeRecord(slot:)` for each slot in `dirtySlots`, then
/// `clearDirty()`. `HNSWIndex.Loader` rebuilds the graph from those rows without re-running
/// construction. Vectors are not in the records; the caller stores them and hands them back
/// to the loader.
///
/// ## Concurrency
/// One writer, many readers, with the lock in the caller: `search`, `nodeRecord`,
/// `metaBytes`, `vector` and `checkIntegrity` only read the graph and may run concurrently
/// with each other (each search borrows its own scratch memory from an internally locked
/// pool); `insert`, `remove`, `compact`, `clearDirty` and setting `efSearch` mutate it and
/// need exclusive access. A reader–writer lock (e.g. `pthread_rwlock_t`) around the index,
/// read-locked for searches and write-locked for changes, is enough.
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

        public init(dimension: Int, m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64,
                    seed: UInt64 = 0x4D33_5345_4152_4348) {
            self.dimension = dimension
            self.m = m
            self.efConstruction = efConstruction
            self.efSearch = efSearch
            self.seed = seed
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

    public let parameters: Parameters
    /// Default ef for `search` when none is given.
    public var efSearch: Int

    let metric: Metric
    /// metric.score, held directly so the hot loops make one indirect call and nothing else.
    let scoreFn: Metric.Function
    let dim: Int
    /// Max links on layers ≥ 1 (M) and on layer 0 (2·M).
    let maxM: Int
    package let maxM0: Int
    /// mL = 1/ln M: level = ⌊−ln U · mL⌋ gives P(level ≥ l) = M^−l.
    let levelMult: Double

    // Storage. Slots 0..<slotCount are in use; the buffers hold `capacity` slots.
    // (`package` members are test hooks: the tests break invariants on purpose.)
    /// Slots in use (live + deleted + free); record slots run 0..<slotCount.
    public internal(set) var slotCount = 0
    var capacity = 0
    /// capacity × dim floats; row s is the vector of slot s.
    var vectors: UnsafeMutablePointer<Float>
    /// capacity × (maxM0 + 1): for slot s, [count, n_1 … n_maxM0] of its layer-0 links.
    package var links0: UnsafeMutablePointer<UInt32>
    /// capacity states (SlotState raw values).
    var states: UnsafeMutablePointer<UInt8>
    /// Per slot: nil for level 0, else layers 1…level, each [count, n_1 … n_M]
    /// (level × (maxM + 1) UInt32s, allocated per node like hnswlib's linkLists_).
    var upperLinks: [UnsafeMutablePointer<UInt32>?] = []
    package var levels: [Int32] = []
    var ids: [Int64] = []
    /// Layer-0 in-links per slot (from live and deleted nodes). A node with none cannot be
    /// reached; linking guarantees every new node at least one (see `ensureInLink`).
    var inDegree0: [UInt32] = []
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
    var dirty: Set<UInt32> = []

    let scratchPool = ScratchPool()

    /// Creates an empty index. Throws `.invalidParameter` for dimension < 1, M outside
    /// 2…1024, efConstruction < 1 or efSearch < 1.
    public init(parameters p: Parameters) throws(IndexError) {
        guard p.dimension >= 1 else { throw .invalidParameter(name: "dimension", value: p.dimension, allowed: "≥ 1") }
        guard (2...Self.mLimit).contains(p.m) else { throw .invalidParameter(name: "M", value: p.m, allowed: "2…\(Self.mLimit)") }
        guard p.efConstruction >= 1 else { throw .invalidParameter(name: "efConstruction", value: p.efConstruction, allowed: "≥ 1") }
        guard p.efSearch >= 1 else { throw .invalidParameter(name: "efSearch", value: p.efSearch, allowed: "≥ 1") }
        parameters = p
        efSearch = p.efSearch
        metric = .innerProduct
        scoreFn = metric.score
        dim = p.dimension
        maxM = p.m
        maxM0 = 2 * p.m
        levelMult = 1 / log(Double(p.m))
        rng = SplitMix64(seed: p.seed)
        vectors = .allocate(capacity: 0)
        links0 = .allocate(capacity: 0)
        states = .allocate(capacity: 0)
    }

    deinit {
        for p in upperLinks { p?.deallocate() }
        vectors.deallocate()
        links0.deallocate()
        states.deallocate()
    }

    // MARK: Counts

    /// Searchable items.
    public var count: Int { liveCount }
    /// Removed items still in the graph; `compact()` frees them.
    public var deletedCount: Int { tombstones }

    public func contains(id: Int64) -> Bool { slotOfID[id] != nil }

    /// The stored vector of a live id, or nil.
    public func vector(forID id: Int64) -> [Float]? {
        guard let s = slotOfID[id] else { return nil }
        return Array(UnsafeBufferPointer(start: vectors + Int(s) * dim, count: dim))
    }

    // MARK: Storage helpers

    @inline(__always) func vec(_ slot: UInt32) -> UnsafeMutablePointer<Float> { vectors + Int(slot) * dim }
    @inline(__always) func isLive(_ slot: UInt32) -> Bool { states[Int(slot)] == SlotState.live.rawValue }
    @inline(__always) func score(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float { scoreFn(a, b, dim) }
    @inline(__always) func cap(level: Int) -> Int { level == 0 ? maxM0 : maxM }

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

    package func setNeighbors(_ slot: UInt32, _ level: Int, _ list: [UInt32]) {
        precondition(list.count <= cap(level: level))
        let p = linkList(slot, level)
        if level == 0 {
            for i in 0..<Int(p[0]) { inDegree0[Int(p[1 + i])] -= 1 }
            for n in list { inDegree0[Int(n)] += 1 }
        }
        p[0] = UInt32(list.count)
        for (i, n) in list.enumerated() { p[1 + i] = n }
        dirty.insert(slot)
    }

    /// Grows the buffers to hold at least `needed` slots (doubling).
    func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let newCap = Swift.max(needed, capacity * 2, 16)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: newCap * dim)
        v.update(from: vectors, count: slotCount * dim)
        vectors.deallocate()
        vectors = v
        let l = UnsafeMutablePointer<UInt32>.allocate(capacity: newCap * (maxM0 + 1))
        l.update(from: links0, count: slotCount * (maxM0 + 1))
        links0.deallocate()
        links0 = l
        let s = UnsafeMutablePointer<UInt8>.allocate(capacity: newCap)
        s.update(from: states, count: slotCount)
        states.deallocate()
        states = s
        capacity = newCap
    }

    /// Appends a new slot (state free, level 0, no links) and returns it.
    func appendSlot() -> UInt32 {
        reserve(slotCount + 1)
        let slot = UInt32(slotCount)
        slotCount += 1
        (vectors + Int(slot) * dim).initialize(repeating: 0, count: dim)
        (links0 + Int(slot) * (maxM0 + 1)).initialize(repeating: 0, count: maxM0 + 1)
        states[Int(slot)] = SlotState.free.rawValue
        upperLinks.append(nil)
        inDegree0.append(0)
        levels.append(0)
        ids.append(0)
        return slot
    }

    /// Gives `slot` a level and empty link lists on layers 0…level.
    func shapeSlot(_ slot: UInt32, level: Int) {
        levels[Int(slot)] = Int32(level)
        setNeighbors(slot, 0, [])
        upperLinks[Int(slot)]?.deallocate()
        upperLinks[Int(slot)] = nil
        if level > 0 {
            let p = UnsafeMutablePointer<UInt32>.allocate(capacity: level * (maxM + 1))
            p.initialize(repeating: 0, count: level * (maxM + 1))
            upperLinks[Int(slot)] = p
        }
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
    /// `.notNormalized` (|‖v‖ − 1| > 1e-3) or `.capacityExceeded`.
    public func insert(id: Int64, vector: [Float]) throws(IndexError) {
        try vector.withUnsafeBufferPointer { (v) throws(IndexError) in try insert(id: id, vector: v) }
    }

    /// Takes a free slot (or a new one) for `id`, copies its vector in, draws its level and
    /// marks it live and dirty; linking it into the graph is the caller's work.
    func claimSlot(id: Int64, vector: UnsafePointer<Float>) -> (slot: UInt32, level: Int) {
        let slot = freeSlots.popLast() ?? appendSlot()
        let level = randomLevel()
        vec(slot).update(from: vector, count: dim)
        states[Int(slot)] = SlotState.live.rawValue
        ids[Int(slot)] = id
        shapeSlot(slot, level: level)
        slotOfID[id] = slot
        liveCount += 1
        dirty.insert(slot)
        return (slot, level)
    }

    public func insert(id: Int64, vector v: UnsafeBufferPointer<Float>) throws(IndexError) {
        guard slotOfID[id] == nil else { throw .duplicateID(id) }
        try validateVector(v, dimension: dim)
        try validateNorm(v.baseAddress!)
        // Only tombstones left: nothing live to link to; start over in the freed slots.
        if liveCount == 0 && tombstones > 0 { compact() }
        guard !freeSlots.isEmpty || slotCount < Self.slotLimit else { throw .capacityExceeded(limit: Self.slotLimit) }

        let (slot, level) = claimSlot(id: id, vector: v.baseAddress!)

        guard entryPoint >= 0 else {
            entryPoint = Int32(slot)
            maxLevel = Int32(level)
            return
        }
        scratchPool.withScratch(slots: slotCount) { scratch in
            link(slot, level: level, scratch: scratch)
        }
        if level > Int(maxLevel) {
            entryPoint = Int32(slot)
            maxLevel = Int32(level)
        }
    }

    func validateNorm(_ v: UnsafePointer<Float>) throws(IndexError) {
        let n2 = score(v, v)
        guard abs(n2 - 1) <= 2e-3 else { throw .notNormalized(norm: n2.squareRoot()) }
    }

    /// Connects `slot` (already holding its vector and level) into the graph: greedy descent
    /// to its top layer, then on each of its layers an efConstruction search, the neighbour
    /// heuristic, and back-links (hnswlib's addPoint + mutuallyConnectNewElement).
    func link(_ slot: UInt32, level: Int, scratch: SearchScratch) {
        let q = UnsafePointer(vec(slot))
        var cur = UInt32(entryPoint)
        let top = Int(maxLevel)
        if level < top { cur = greedyDescent(q, from: cur, topLevel: top, downTo: level + 1) }
        for l in stride(from: Swift.min(level, top), through: 0, by: -1) {
            let found = searchLayer(q, entry: cur, ef: parameters.efConstruction, level: l, scratch: scratch,
                                    excluding: slot)
            guard let best = found.first else { continue }
            let selected = selectNeighbors(found, max: maxM)
            setNeighbors(slot, l, selected)
            for n in selected { addLink(from: n, to: slot, level: l) }
            if l == 0 && inDegree0[Int(slot)] == 0 { ensureInLink(slot, from: found) }
            cur = keySlot(best)
        }
    }

    /// Gives `x` a layer-0 in-link when back-link pruning left it none (hnswlib does not,
    /// and then loses nodes: with many identical vectors every score ties, the heuristic
    /// keeps the older nodes, and each new duplicate ends up unreachable). Takes the best
    /// candidate whose list has a link to a node with ≥ 2 in-links and points that link at
    /// `x` instead, so no node drops to zero.
    func ensureInLink(_ x: UInt32, from candidates: [UInt64]) {
        for key in candidates {
            let n = keySlot(key)
            var list = neighbors(n, 0)
            if list.contains(x) { return }
            if list.count < maxM0 {
                list.append(x)
                setNeighbors(n, 0, list)
                return
            }
            var replace = -1
            var most: UInt32 = 1
            for (i, y) in list.enumerated() where inDegree0[Int(y)] > most {
                most = inDegree0[Int(y)]
                replace = i
            }
            if replace >= 0 {
                list[replace] = x
                setNeighbors(n, 0, list)
                return
            }
        }
    }

    /// Adds the link n → target on `level`; when n's list is full, the heuristic chooses
    /// among its links plus the new one (so target may be left out).
    func addLink(from n: UInt32, to target: UInt32, level: Int) {
        let limit = cap(level: level)
        let p = linkList(n, level)
        let count = Int(p[0])
        for i in 0..<count where p[1 + i] == target { return }
        if count < limit {
            p[1 + count] = target
            p[0] = UInt32(count + 1)
            if level == 0 { inDegree0[Int(target)] += 1 }
            dirty.insert(n)
            return
        }
        var selected = prunedNeighbors(of: n, list: p, adding: target, limit: limit)
        if level == 0 { keepOnlyInLinks(&selected, old: neighbors(n, 0), limit: limit) }
        setNeighbors(n, level, selected)
    }

    /// n's full list `p` (count, ids…) plus `target`, cut back to `limit` by the neighbour
    /// heuristic (closest first).
    func prunedNeighbors(of n: UInt32, list p: UnsafeMutablePointer<UInt32>, adding target: UInt32,
                         limit: Int) -> [UInt32] {
        let count = Int(p[0]), base = UnsafePointer(vec(n))
        var keys: [UInt64] = []
        keys.reserveCapacity(count + 1)
        for i in 0..<count { let x = p[1 + i]; keys.append(packKey(score(base, vec(x)), x)) }
        keys.append(packKey(score(base, vec(target)), target))
        keys.sort(by: >)
        return selectNeighbors(keys, max: limit)
    }

    /// Puts back into n's new layer-0 list every dropped node that n was the only in-link
    /// of, so pruning never orphans a node: into free room, else in place of the selected
    /// node with the most in-links (≥ 2, so it keeps one). hnswlib has no such guard, and
    /// orphans pile up with duplicate vectors (all scores tie and the newest always loses).
    func keepOnlyInLinks(_ selected: inout [UInt32], old: [UInt32], limit: Int) {
        for y in old {
            guard inDegree0[Int(y)] == 1, isLive(y), !selected.contains(y) else { continue }
            if selected.count < limit {
                selected.append(y)
                continue
            }
            var replace = -1
            var most: UInt32 = 1
            for (i, z) in selected.enumerated() {
                // z's count includes n → z only if z is in the old list.
                let others = inDegree0[Int(z)] - (old.contains(z) ? 1 : 0)
                if others >= 1 && inDegree0[Int(z)] > most {
                    most = inDegree0[Int(z)]
                    replace = i
                }
            }
            if replace >= 0 { selected[replace] = y }
        }
    }

    /// hnswlib's getNeighborsByHeuristic2. `candidates` are keys scored against the base
    /// node, best first. A candidate is kept only if it is closer to the base than to every
    /// neighbour already kept; this spreads links over directions instead of crowding them
    /// into one cluster, which keeps clusters connected to each other.
    func selectNeighbors(_ candidates: [UInt64], max m: Int) -> [UInt32] {
        if candidates.count <= m { return candidates.map(keySlot) }
        let vectors = self.vectors, dim = self.dim, scoreFn = self.scoreFn
        var selected: [UInt32] = []
        selected.reserveCapacity(m)
        for key in candidates {
            let c = keySlot(key)
            let toBase = keyScore(key)
            let pc = vectors + Int(c) * dim
            var keep = true
            var j = 0
            while j < selected.count {
                if scoreFn(pc, vectors + Int(selected[j]) * dim, dim) > toBase {
                    keep = false
                    break
                }
                j += 1
            }
            if keep {
                selected.append(c)
                if selected.count >= m { break }
            }
        }
        return selected
    }

    // MARK: Search

    /// Greedy walk (ef = 1) from `from` on layers topLevel … downTo, returning the closest node found.
    ///
    /// With `locks` (parallel construction) each list is copied under its node's lock into
    /// `listCopy` (≥ maxM0 + 1 UInt32s) before it is read.
    func greedyDescent(_ q: UnsafePointer<Float>, from: UInt32, topLevel: Int, downTo: Int,
                       locks: UnsafeMutablePointer<UInt8>? = nil,
                       listCopy: UnsafeMutablePointer<UInt32>? = nil) -> UInt32 {
        let vectors = self.vectors, dim = self.dim, scoreFn = self.scoreFn
        var cur = from
        var curKey = packKey(scoreFn(q, vectors + Int(cur) * dim, dim), cur)
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
                    let k = packKey(scoreFn(q, vectors + Int(c) * dim, dim), c)
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

    /// Best-first search of one layer (hnswlib's searchBaseLayer/ST). Returns up to `ef` keys
    /// of live nodes, best first. Tombstones are expanded but not collected; while any exist
    /// the search keeps going until it has `ef` live results or runs out of candidates, so a
    /// search still finds k live items among many tombstones. `excluding` (the node being
    /// linked) is never collected.
    ///
    /// The inner loop reads only locals (pointers, counts, the two heaps): class properties
    /// would cost a dynamic exclusivity check per access in debug builds.
    ///
    /// With `locks` (parallel construction) each list is copied under its node's lock first.
    func searchLayer(_ q: UnsafePointer<Float>, entry: UInt32, ef: Int, level: Int,
                     scratch: SearchScratch, excluding: UInt32 = .max,
                     locks: UnsafeMutablePointer<UInt8>? = nil) -> [UInt64] {
        scratch.beginSearch(slots: slotCount)
        var candidates = scratch.candidates
        var results = scratch.results
        let marks = scratch.marks, epoch = scratch.epoch
        let vectors = self.vectors, states = self.states, dim = self.dim, scoreFn = self.scoreFn
        let links0 = self.links0, stride0 = maxM0 + 1
        let live = SlotState.live.rawValue
        let mustFill = tombstones > 0
        let listCopy = scratch.listCopy
        // The first 4 cache lines: the hardware prefetcher follows the stream from there.
        // (Prefetching all 4 KB of a 1024-d vector measured slower: it floods the fill buffers.)
        let prefetchBytes = Swift.min(dim * MemoryLayout<Float>.stride, 256)

        marks[Int(entry)] = epoch
        let entryKey = packKey(scoreFn(q, vectors + Int(entry) * dim, dim), entry)
        candidates.push(~entryKey)
        if states[Int(entry)] == live && entry != excluding { results.push(entryKey) }

        while candidates.count > 0 {
            let ck = ~candidates.popMin()
            if results.count > 0 && ck < results.min && (results.count >= ef || !mustFill) { break }
            let c = keySlot(ck)
            var p = level == 0 ? links0 + Int(c) * stride0 : linkList(c, level)
            if let locks { p = copyList(p, lock: locks + Int(c), into: listCopy) }
            let n = Int(p[0])
            // Vectors are 4 KB apart in memory and far beyond cache for large indexes: start
            // loading the first unvisited neighbour's vector, and while scoring one, the next one's.
            var i = 1
            while i <= n && marks[Int(p[i])] == epoch { i += 1 }
            if i <= n { m3ix_prefetch(vectors + Int(p[i]) * dim, prefetchBytes) }
            while i <= n {
                let x = p[i]
                i += 1
                if marks[Int(x)] == epoch { continue }
                marks[Int(x)] = epoch
                var j = i
                while j <= n && marks[Int(p[j])] == epoch { j += 1 }
                if j <= n { m3ix_prefetch(vectors + Int(p[j]) * dim, prefetchBytes) }
                let k = packKey(scoreFn(q, vectors + Int(x) * dim, dim), x)
                if results.count < ef || k > results.min {
                    candidates.push(~k)
                    if states[Int(x)] == live && x != excluding {
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
        return out
    }

    /// The `k` live items most similar to `query`, best first (ties: lower id first).
    ///
    /// `ef` (default `efSearch`, raised to `k`) is the candidate-list size: larger is
    /// slower and more accurate. Returns fewer than k only when fewer live items exist.
    /// Throws `.dimensionMismatch` or `.nonFiniteValue`.
    public func search(_ query: [Float], k: Int, ef: Int? = nil) throws(IndexError) -> [IndexHit] {
        try query.withUnsafeBufferPointer { (q) throws(IndexError) in try search(q, k: k, ef: ef) }
    }

    public func search(_ query: UnsafeBufferPointer<Float>, k: Int, ef: Int? = nil) throws(IndexError) -> [IndexHit] {
        try validateVector(query, dimension: dim)
        guard k > 0, liveCount > 0, entryPoint >= 0 else { return [] }
        let q = query.baseAddress!
        let keys = scratchPool.withScratch(slots: slotCount) { scratch in
            let start = greedyDescent(q, from: UInt32(entryPoint), topLevel: Int(maxLevel), downTo: 1)
            return searchLayer(q, entry: start, ef: Swift.max(ef ?? efSearch, k), level: 0, scratch: scratch)
        }
        var hits = keys.map { IndexHit(id: ids[Int(keySlot($0))], score: keyScore($0)) }
        hits.sort(by: IndexHit.ranksBefore)
        if hits.count > k { hits.removeLast(hits.count - k) }
        return hits
    }

    // MARK: Remove, compact

    /// Marks the item removed (a tombstone): it stays in the graph for routing but is never
    /// returned. Returns false if the id is not live. Its slot becomes reusable after `compact()`.
    @discardableResult
    public func remove(id: Int64) -> Bool {
        guard let slot = slotOfID.removeValue(forKey: id) else { return false }
        states[Int(slot)] = SlotState.deleted.rawValue
        liveCount -= 1
        tombstones += 1
        dirty.insert(slot)
        return true
    }

    /// Removes tombstones for good: every live node that links to one gets its list rebuilt
    /// by the neighbour heuristic from its live links plus the live nodes its deleted links
    /// led to (two hops through chains of tombstones), then the deleted slots are unlinked and
    /// freed for reuse. Last, any live node that layer 0 cannot reach from the entry point
    /// (rare; `checkIntegrity()` reports them) is linked in again. Marks every changed slot
    /// dirty. Returns the number of slots freed.
    ///
    /// Cost: a few heuristic selections per node that linked to a tombstone, plus one
    /// breadth-first pass; call it when tombstones pass some fraction (e.g. 10%) of the index.
    @discardableResult
    public func compact() -> Int {
        guard tombstones > 0 else {
            reconnectUnreachable()
            return 0
        }
        let deletedState = SlotState.deleted.rawValue
        for s in 0..<UInt32(slotCount) where isLive(s) {
            for l in 0...Int(levels[Int(s)]) {
                let list = neighbors(s, l)
                guard list.contains(where: { states[Int($0)] == deletedState }) else { continue }
                var selected = relinkCandidates(for: s, level: l, list: list)
                if l == 0 { keepOnlyInLinks(&selected, old: list, limit: maxM0) }
                setNeighbors(s, l, selected)
            }
        }
        var freed = 0
        for s in 0..<UInt32(slotCount) where states[Int(s)] == deletedState {
            states[Int(s)] = SlotState.free.rawValue
            ids[Int(s)] = 0
            shapeSlot(s, level: 0)
            vec(s).update(repeating: 0, count: dim)
            freeSlots.append(s)
            dirty.insert(s)
            freed += 1
        }
        freeSlots.sort(by: >)
        tombstones = 0
        if entryPoint >= 0 && !isLive(UInt32(entryPoint)) { chooseEntryPoint() }
        reconnectUnreachable()
        return freed
    }

    /// The new link list of live `s` at `level` whose current `list` holds tombstones.
    private func relinkCandidates(for s: UInt32, level l: Int, list: [UInt32]) -> [UInt32] {
        let deletedState = SlotState.deleted.rawValue
        var seen: Set<UInt32> = [s]
        var pool: [UInt32] = []
        var frontier: [UInt32] = []
        for n in list where seen.insert(n).inserted {
            if states[Int(n)] == deletedState { frontier.append(n) } else { pool.append(n) }
        }
        var hops = 0
        while !frontier.isEmpty && hops < 2 {
            var next: [UInt32] = []
            for d in frontier {
                for y in neighbors(d, l) where seen.insert(y).inserted {
                    if states[Int(y)] == deletedState { next.append(y) } else if isLive(y) { pool.append(y) }
                }
            }
            frontier = next
            hops += 1
        }
        let base = UnsafePointer(vec(s))
        var keys = pool.map { packKey(score(base, vec($0)), $0) }.sorted(by: >)
        // The heuristic rarely keeps candidates beyond the best 2·cap; bound its cost.
        if keys.count > 2 * cap(level: l) { keys.removeLast(keys.count - 2 * cap(level: l)) }
        return selectNeighbors(keys, max: cap(level: l))
    }

    /// Entry point = a live node of the highest level (lowest slot among equals).
    private func chooseEntryPoint() {
        entryPoint = -1
        maxLevel = -1
        for s in 0..<slotCount where isLive(UInt32(s)) && levels[s] > maxLevel {
            entryPoint = Int32(s)
            maxLevel = levels[s]
        }
    }

    /// Links every live node that layer 0 cannot reach from the entry point back in, as if
    /// inserted again (its level and upper links stay). Rare: back-link pruning or compaction
    /// can leave a node with no incoming link.
    func reconnectUnreachable() {
        for _ in 0..<3 {
            let unreachable = unreachableLiveSlots()
            if unreachable.isEmpty { return }
            scratchPool.withScratch(slots: slotCount) { scratch in
                for s in unreachable { relinkLayer0(s, scratch: scratch) }
            }
        }
    }

    private func relinkLayer0(_ slot: UInt32, scratch: SearchScratch) {
        let q = UnsafePointer(vec(slot))
        let start = greedyDescent(q, from: UInt32(entryPoint), topLevel: Int(maxLevel), downTo: 1)
        let found = searchLayer(q, entry: start, ef: parameters.efConstruction, level: 0, scratch: scratch,
                                excluding: slot)
        guard !found.isEmpty else { return }
        // Keep the node's own links, add the search's best.
        let base = q
        var keys = found
        for n in neighbors(slot, 0) where !found.contains(where: { keySlot($0) == n }) {
            keys.append(packKey(score(base, vec(n)), n))
        }
        keys.sort(by: >)
        let selected = selectNeighbors(keys, max: maxM0)
        setNeighbors(slot, 0, selected)
        for n in selected { addLink(from: n, to: slot, level: 0) }
        if inDegree0[Int(slot)] == 0 { ensureInLink(slot, from: found) }
    }

    /// Live slots not reachable on layer 0 from the entry point (breadth-first over all links).
    func unreachableLiveSlots() -> [UInt32] {
        guard liveCount > 0 else { return [] }
        guard entryPoint >= 0 else { return (0..<UInt32(slotCount)).filter(isLive) }
        var seen = [Bool](repeating: false, count: slotCount)
        var queue: [UInt32] = [UInt32(entryPoint)]
        seen[Int(entryPoint)] = true
        var head = 0
        while head < queue.count {
            let c = queue[head]
            head += 1
            let p = links0 + Int(c) * (maxM0 + 1)
            for i in 0..<Int(p[0]) {
                let x = p[1 + i]
                if !seen[Int(x)] {
                    seen[Int(x)] = true
                    queue.append(x)
                }
            }
        }
        return (0..<UInt32(slotCount)).filter { isLive($0) && !seen[Int($0)] }
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
