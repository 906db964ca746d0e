extension HNSWIndex {
    /// What `checkIntegrity()` counted.
    public struct IntegrityReport: Equatable, Sendable, CustomStringConvertible {
        public var slots: Int
        public var live: Int
        public var deleted: Int
        public var free: Int
        public var maxLevel: Int
        /// Live nodes reached on layer 0 from the entry point (equals `live` when the check passes).
        public var reachableLive: Int
        /// Mean number of layer-0 links per non-free node.
        public var meanDegree0: Double

        public var description: String {
            "\(slots) slots: \(live) live (\(reachableLive) reachable), \(deleted) deleted, \(free) free; "
                + "max level \(maxLevel), mean layer-0 degree \(meanDegree0)"
        }
    }

    /// Checks every invariant of the graph (hnswlib's checkIntegrity, extended) and returns
    /// what it counted. Throws `.integrityViolation` naming the first broken one:
    ///
    /// - counts: live + deleted + free = slots; live ids map to live slots holding that id;
    /// - every link list: at most M links (2·M on layer 0), no self link, no duplicate, every
    ///   target a non-free slot whose level reaches the layer; free slots have no links;
    /// - the entry point is a non-free node at the maximum level (−1 when nothing is linked);
    /// - the layer-0 spanning tree (unless a loaded graph still awaits its repair,
    ///   `treeNeedsRepair`): each parent is its child's first link and lists the child, the
    ///   child counts match, and every parent chain ends at the one root;
    /// - every live node is reachable on layer 0 from the entry point (the count is
    ///   reported), checked by a breadth-first walk over all links, trusting no tree.
    ///
    /// O(slots · M) time. Read-only, so it may run alongside searches.
    @discardableResult
    public func checkIntegrity() throws(IndexError) -> IntegrityReport {
        try validateStructure { .integrityViolation($0) }
        if !treeNeedsRepair, let problem = treeViolation() { throw .integrityViolation(problem) }
        let unreachable = unreachableLiveSlots()
        guard unreachable.isEmpty else {
            throw .integrityViolation(
                "\(unreachable.count) of \(liveCount) live nodes are unreachable on layer 0 from entry point "
                    + "\(entryPoint) (first slots: \(unreachable.prefix(5).map { Int($0) }))")
        }
        var edges = 0
        var linked = 0
        for s in 0..<slotCount where states[s] != SlotState.free.rawValue {
            edges += Int(links0[s * (maxM0 + 1)])
            linked += 1
        }
        return IntegrityReport(
            slots: slotCount, live: liveCount, deleted: tombstones, free: freeSlots.count,
            maxLevel: Int(maxLevel), reachableLive: liveCount,
            meanDegree0: linked == 0 ? 0 : Double(edges) / Double(linked))
    }

    /// The first broken invariant of the spanning tree, if any.
    func treeViolation() -> String? {
        let n = slotCount
        var children = [Int](repeating: 0, count: n)
        var roots: [Int] = []
        for s in 0..<n where states[s] != SlotState.free.rawValue {
            let p = parent0[s]
            if p == Self.noParent {
                roots.append(s)
                continue
            }
            guard Int(p) < n, !isFree(p) else { return "slot \(s) has parent \(p), which is not a linked slot" }
            let list = linkList(UInt32(s), 0)
            guard list[0] > 0, list[1] == p else { return "slot \(s)'s first layer-0 link is not its parent \(p)" }
            guard layer0(of: p, contains: UInt32(s)) else { return "parent \(p) does not link to its child \(s)" }
            children[Int(p)] += 1
        }
        for s in 0..<n where states[s] != SlotState.free.rawValue && children[s] != Int(childCount[s]) {
            return "slot \(s) has \(children[s]) tree children but \(childCount[s]) are counted"
        }
        guard roots.count <= 1 else { return "the spanning tree has \(roots.count) roots (first slots: \(roots.prefix(5)))" }
        if let r = roots.first, r != Int(entryPoint) { return "the spanning tree's root \(r) is not the entry point \(entryPoint)" }
        for s in 0..<n where (twinFlags[s] != 0) != twinRule(UInt32(s)) {
            return "slot \(s) is \(twinFlags[s] != 0 ? "" : "not ")marked a twin, against its links"
        }
        // Every chain must reach the root: walk each, memoising the nodes known to reach it.
        var reaches = [Bool](repeating: false, count: n)
        if let r = roots.first { reaches[r] = true }
        var path: [Int] = []
        for s in 0..<n where states[s] != SlotState.free.rawValue && !reaches[s] {
            path.removeAll(keepingCapacity: true)
            var v = s
            while !reaches[v] {
                path.append(v)
                let p = parent0[v]
                guard p != Self.noParent, path.count <= n else { return "slot \(s)'s parent chain does not reach the root" }
                v = Int(p)
            }
            for u in path { reaches[u] = true }
        }
        return nil
    }

    /// The structural invariants (everything but reachability), shared by `checkIntegrity()`
    /// and the loader; `fail` turns a message into the caller's error kind. After this passes,
    /// no search, insert or compaction can index out of bounds.
    func validateStructure(_ fail: (String) -> IndexError) throws(IndexError) {
        var counts = [0, 0, 0]
        var topLevel: Int32 = -1
        // stamp[x] == list number ⇔ x already seen in the current list (duplicate check in O(1)).
        var stamp = [UInt32](repeating: 0, count: slotCount)
        var listNumber: UInt32 = 0
        for s in 0..<slotCount {
            let raw = states[s]
            guard raw <= 2 else { throw fail("slot \(s) has unknown state \(raw)") }
            counts[Int(raw)] += 1
            let level = levels[s]
            guard (0...Int32(Self.levelLimit)).contains(level) else {
                throw fail("slot \(s) has level \(level) outside 0…\(Self.levelLimit)")
            }
            guard (level > 0) == (upperLinks[s] != nil) else { throw fail("slot \(s) upper-layer storage does not match level \(level)") }
            if raw == SlotState.free.rawValue {
                guard level == 0, links0[s * (maxM0 + 1)] == 0 else { throw fail("free slot \(s) has a level or links") }
                continue
            }
            topLevel = Swift.max(topLevel, level)
            for l in 0...Int(level) {
                let p = linkList(UInt32(s), l)
                let n = Int(p[0])
                listNumber &+= 1
                if listNumber == 0 {  // wrapped (≥ 2³² lists): start the stamps over
                    stamp = [UInt32](repeating: 0, count: slotCount)
                    listNumber = 1
                }
                guard n <= cap(level: l) else { throw fail("slot \(s) has \(n) links on layer \(l) (max \(cap(level: l)))") }
                for i in 0..<n {
                    let x = p[1 + i]
                    guard Int(x) < slotCount else { throw fail("slot \(s) layer \(l) links to slot \(x) ≥ \(slotCount) slots") }
                    guard Int(x) != s else { throw fail("slot \(s) links to itself on layer \(l)") }
                    guard states[Int(x)] != SlotState.free.rawValue else { throw fail("slot \(s) layer \(l) links to free slot \(x)") }
                    guard levels[Int(x)] >= l else {
                        throw fail("slot \(s) layer \(l) links to slot \(x) whose level is \(levels[Int(x)])")
                    }
                    guard stamp[Int(x)] != listNumber else { throw fail("slot \(s) links to slot \(x) twice on layer \(l)") }
                    stamp[Int(x)] = listNumber
                }
            }
        }
        guard counts[0] == liveCount, counts[1] == tombstones, counts[2] == freeSlots.count else {
            throw fail("state counts live \(counts[0]), deleted \(counts[1]), free \(counts[2]) disagree with "
                + "the header's \(liveCount), \(tombstones), \(freeSlots.count)")
        }
        guard slotOfID.count == liveCount else { throw fail("\(slotOfID.count) live ids for \(liveCount) live slots") }
        for (id, s) in slotOfID {
            guard Int(s) < slotCount, isLive(s), ids[Int(s)] == id else { throw fail("id \(id) maps to slot \(s), which does not hold it live") }
        }
        for (i, s) in freeSlots.enumerated() {
            guard Int(s) < slotCount, states[Int(s)] == SlotState.free.rawValue, i == 0 || freeSlots[i - 1] > s else {
                throw fail("free list is inconsistent at slot \(s)")
            }
        }
        if topLevel < 0 {
            guard entryPoint == -1, maxLevel == -1 else {
                throw fail("entry point \(entryPoint) / max level \(maxLevel) set in an index with no linked node")
            }
        } else {
            guard entryPoint >= 0, Int(entryPoint) < slotCount, states[Int(entryPoint)] != SlotState.free.rawValue else {
                throw fail("entry point \(entryPoint) is not a linked slot")
            }
            guard maxLevel == topLevel, levels[Int(entryPoint)] == maxLevel else {
                throw fail("entry point \(entryPoint) has level \(levels[Int(entryPoint)]); max level is \(maxLevel), highest node level \(topLevel)")
            }
        }
    }
}
