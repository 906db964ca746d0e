// Why no input can disconnect the graph.
//
// hnswlib's back-link pruning can drop the last link into a node, and with many identical or
// near-identical vectors it does so all the time: every score ties, the heuristic keeps the
// older nodes, and new ones become unreachable (issue 16: a repeated log line left 551 of 730
// nodes unreachable). Guarding each node's last in-link is not enough either: nodes can keep
// in-links from each other and still form an island nobody outside reaches.
//
// So layer 0 carries a spanning tree whose edges run both ways:
// - its root is the entry point; every other node has a parent, which is the first entry
//   of the node's layer-0 list, and the parent's list holds the node;
// - pruning never drops a node's parent or its children (`prunedNeighbors`), so the tree
//   edges stay in both directions, and along them every node reaches every other one;
// - a new node takes as parent its best candidate that has fewer than `childLimit` children,
//   so a node reserves at most 1 + childLimit (5) of its 2·M links and the heuristic keeps
//   the rest.
// The tree needs no storage of its own: a record's first layer-0 link is the parent when
// that node links back, except at the entry point (`deriveTree`), so the file format is
// unchanged. When the entry point moves, the tree is re-rooted there (`makeRoot`).
//
// A vector identical to one in the graph (a repeated chunk) becomes a leaf of a node holding
// the same vector: level 0, its list just its parent, and nobody else's links spent on it.
// Identical scores form a plateau that fills any beam; this keeps the plateau out of the
// upper layers and out of other nodes' lists, and `searchLayer` recognises such a copy (its
// parent's score, exactly) and keeps it out of the beam, gathering it only as a result, so
// routing is as if the copies were one node.
//
// Deletion keeps tombstones in the tree; `compact()` frees them, which leaves their children
// without a parent, and `connect()` attaches every such subtree to the main tree again.
import CM3Kernels

extension HNSWIndex {
    // MARK: Parents

    /// A node among `found` (best first) holding the same vector as `x`, if any.
    func identicalNode(to x: UInt32, in found: [UInt64]) -> UInt32? {
        guard !found.isEmpty else { return nil }
        let selfScore = scoreRows(x, x)
        // An identical row scores exactly `selfScore`; rounding may put a distinct one above it.
        for key in found {
            if keyScore(key) < selfScore { break }
            let c = keySlot(key)
            if codec.identical(row(c), row(x)) { return c }
        }
        return nil
    }

    /// Makes `n` the parent of `x` if it has room for another child (under n's lock).
    func takeChild(_ n: UInt32, for x: UInt32, limit: Int, locks: UnsafeMutablePointer<UInt8>?) -> Bool {
        if let locks { m3ix_spin_lock(locks + Int(n)) }
        defer { if let locks { m3ix_spin_unlock(locks + Int(n)) } }
        guard !isFree(n), Int(childCount[Int(n)]) < limit else { return false }
        childCount[Int(n)] += 1
        parent0[Int(x)] = n
        return true
    }

    /// Whether `s` is a twin: a copy hung below a node holding the same vector. Searches
    /// gather twins apart from the beam, so only twins may hang below twins.
    @inline(__always) func isTwin(_ s: UInt32) -> Bool { twinFlags[Int(s)] != 0 }

    /// What makes a node a twin, read from the graph alone (so a loaded graph gets the same
    /// flags): level 0, a parent holding the same vector, no links but its parent and its
    /// children, and only twins below it.
    func twinRule(_ x: UInt32) -> Bool {
        let p = parent0[Int(x)]
        guard !isFree(x), levels[Int(x)] == 0, p != Self.noParent else { return false }
        let list = linkList(x, 0)
        for i in 0..<Int(list[0]) {
            let y = list[1 + i]
            if y != p && (parent0[Int(y)] != x || twinFlags[Int(y)] == 0) { return false }
        }
        return codec.identical(row(x), row(p))  // last: the only check that reads the rows
    }

    /// Sets every twin flag by `twinRule`, children before parents (in a graph with the tree
    /// whole; a damaged tree gets none).
    func refreshTwinFlags() {
        let n = slotCount
        for s in 0..<n { twinFlags[s] = 0 }
        guard !treeNeedsRepair else { return }
        // Depth of each node below the root, then deepest first.
        var depth = [Int32](repeating: -1, count: n)
        var path: [Int] = []
        for s in 0..<n where !isFree(UInt32(s)) && depth[s] < 0 {
            path.removeAll(keepingCapacity: true)
            var v = s
            while depth[v] < 0 && parent0[v] != Self.noParent && path.count <= n {
                path.append(v)
                v = Int(parent0[v])
            }
            if depth[v] < 0 { depth[v] = 0 }
            var d = depth[v]
            for u in path.reversed() {
                d += 1
                depth[u] = d
            }
        }
        // Deepest first by a counting sort (depths are below n): the comparison sort was a
        // visible part of opening a large graph.
        var maxDepth = 0
        for s in 0..<n where depth[s] > maxDepth { maxDepth = Int(depth[s]) }
        guard maxDepth > 0 else { return }
        var start = [Int](repeating: 0, count: maxDepth + 2)
        for s in 0..<n where depth[s] > 0 { start[maxDepth - Int(depth[s]) + 1] += 1 }
        for d in 1..<start.count { start[d] += start[d - 1] }
        var order = [Int](repeating: 0, count: start[maxDepth + 1])
        for s in 0..<n where depth[s] > 0 {
            let bucket = maxDepth - Int(depth[s])
            order[start[bucket]] = s
            start[bucket] += 1
        }
        for s in order { twinFlags[s] = twinRule(UInt32(s)) ? 1 : 0 }
    }

    /// The parent of new node `x`: the best candidate with room, else the nearest node with
    /// room below the best one (`descendToRoom`). Sets parent0[x] before anything links to x.
    func adoptParent(for x: UInt32, candidates: [UInt64], fallback: UInt32,
                     locks: UnsafeMutablePointer<UInt8>?) -> UInt32 {
        for key in candidates where !isTwin(keySlot(key)) && takeChild(keySlot(key), for: x, limit: childLimit, locks: locks) {
            return keySlot(key)
        }
        return descendToRoom(from: candidates.first.map(keySlot) ?? fallback, for: x, twinOf: nil, locks: locks)
    }

    /// Walks down the tree from `v` to a node with room for `x`, taking the child with the
    /// fewest children at each step (so repeated walks fill the tree breadth first and it
    /// stays shallow); leaves have room, so the walk ends. With `twinOf`, children holding
    /// that vector are preferred.
    func descendToRoom(from start: UInt32, for x: UInt32, twinOf: UInt32?, locks: UnsafeMutablePointer<UInt8>?) -> UInt32 {
        var v = start
        let buffer = UnsafeMutablePointer<UInt32>.allocate(capacity: maxM0 + 1)
        defer { buffer.deallocate() }
        for _ in 0...slotCount {
            if takeChild(v, for: x, limit: childLimit, locks: locks) { return v }
            var p = linkList(v, 0)
            if let locks { p = copyList(p, lock: locks + Int(v), into: buffer) }
            var best: UInt32?
            var bestRank = (1, Int.max)
            for i in 0..<Int(p[0]) {
                let y = p[1 + i]
                guard parent0[Int(y)] == v else { continue }
                // A copy goes down through copies of its vector only; any other node keeps out
                // of twins (they are searched apart from the beam).
                if let twinOf {
                    guard isTwin(y) && codec.identical(row(y), row(twinOf)) else { continue }
                } else if isTwin(y) {
                    continue
                }
                let rank = (0, Int(childCount[Int(y)]))
                if rank < bestRank {
                    bestRank = rank
                    best = y
                }
            }
            // No child to go down to (or one is being linked by another thread right now).
            guard let best else { break }
            v = best
        }
        // Over the soft limit, still leaving room for the parent and one chosen link.
        if takeChild(v, for: x, limit: maxM0 - 2, locks: locks) { return v }
        // Only reached with a tree a damaged file left odd: any node with room will do (one
        // exists: a tree of n nodes has n − 1 children over them). A twin taking an ordinary
        // child stops being a twin, and so do the twins above it.
        for s in 0..<UInt32(slotCount) where s != x && takeChild(s, for: x, limit: maxM0 - 2, locks: locks) {
            var t = s
            while isTwin(t) {
                twinFlags[Int(t)] = 0
                t = parent0[Int(t)]
            }
            return s
        }
        return v
    }

    /// Links `x`, a copy of `twin`'s vector, as a leaf: its parent is a node holding the same
    /// vector with room (the first in `found`, else below the twin), its list only that parent.
    func linkTwin(_ x: UInt32, of twin: UInt32, found: [UInt64], locks: UnsafeMutablePointer<UInt8>?) {
        var parent: UInt32?
        for key in found {
            let c = keySlot(key)
            guard codec.identical(row(c), row(x)) else { break }  // the twins lead `found`
            if takeChild(c, for: x, limit: childLimit, locks: locks) {
                parent = c
                break
            }
        }
        let p = parent ?? descendToRoom(from: twin, for: x, twinOf: twin, locks: locks)
        if let locks { m3ix_spin_lock(locks + Int(x)) }
        writeList(linkList(x, 0), [p])
        markDirty(x)
        // Set before x is linked from p, so no search ever sees it as an ordinary node.
        twinFlags[Int(x)] = codec.identical(row(x), row(p)) ? 1 : 0
        if let locks { m3ix_spin_unlock(locks + Int(x)) }
        addLink(from: p, to: x, level: 0, locks: locks)
    }

    /// A twin keeps level 0: frees the upper-layer lists it was given when its level was drawn.
    func dropUpperLayers(_ x: UInt32) {
        guard levels[Int(x)] > 0 else { return }
        levels[Int(x)] = 0
        upperLinks[Int(x)]?.deallocate()
        upperLinks[Int(x)] = nil
        markDirty(x)
    }

    /// Re-roots the tree at `x` by reversing the parent links on its path to the root (each
    /// node there gets its former child as parent, moved to the front of its list), so the
    /// root stays the entry point. O(depth).
    func makeRoot(_ x: UInt32) {
        var path = [x]
        while parent0[Int(path[path.count - 1])] != Self.noParent, path.count <= slotCount {
            path.append(parent0[Int(path[path.count - 1])])
        }
        guard path.count > 1 else { return }
        for i in stride(from: path.count - 1, to: 0, by: -1) {
            let v = path[i], newParent = path[i - 1]
            parent0[Int(v)] = newParent
            var list = neighbors(v, 0)
            if let j = list.firstIndex(of: newParent) { list.remove(at: j) }
            list.insert(newParent, at: 0)
            setNeighbors(v, 0, list)
        }
        parent0[Int(x)] = Self.noParent
        childCount[Int(path[path.count - 1])] -= 1
        childCount[Int(x)] += 1
        for v in path { twinFlags[Int(v)] = twinRule(v) ? 1 : 0 }
    }

    // MARK: Repair

    /// Whether `x` is in the layer-0 list of `n`.
    func layer0(of n: UInt32, contains x: UInt32) -> Bool {
        let p = links0 + Int(n) * (maxM0 + 1)
        for i in 0..<Int(p[0]) where p[1 + i] == x { return true }
        return false
    }

    /// Makes the spanning tree whole: drops parent links that are no longer tree edges
    /// (damaged lists, freed parents), then attaches every tree other than the one holding
    /// the entry point to its nearest node in that one, as a new insert would. Marks what it
    /// changes dirty.
    func connect() {
        treeNeedsRepair = false
        let n = slotCount
        // A parent link must be the node's first link, to a non-free node that links back.
        for s in 0..<UInt32(n) where !isFree(s) {
            let p = parent0[Int(s)]
            guard p != Self.noParent else { continue }
            let list = linkList(s, 0)
            if Int(p) >= n || isFree(p) || list[0] == 0 || list[1] != p || !layer0(of: p, contains: s) {
                parent0[Int(s)] = Self.noParent
                twinFlags[Int(s)] = 0
            }
        }
        for s in 0..<n { childCount[s] = 0 }
        for s in 0..<n where parent0[s] != Self.noParent { childCount[Int(parent0[s])] += 1 }
        guard entryPoint >= 0 else { return }
        makeRoot(UInt32(entryPoint))

        // The root of every node (parent chains are acyclic: parents are older, and
        // `deriveTree` breaks cycles in loaded graphs).
        var root = [UInt32](repeating: .max, count: n)
        var path: [UInt32] = []
        for s in 0..<UInt32(n) where !isFree(s) && root[Int(s)] == .max {
            path.removeAll(keepingCapacity: true)
            var v = s
            while root[Int(v)] == .max, parent0[Int(v)] != Self.noParent, path.count <= n {
                path.append(v)
                v = parent0[Int(v)]
            }
            if root[Int(v)] == .max { root[Int(v)] = v }
            for u in path { root[Int(u)] = root[Int(v)] }
        }
        let mainRoot = root[Int(entryPoint)]
        var inMain = root.map { $0 == mainRoot }
        var orphans = (0..<UInt32(n)).filter { !isFree($0) && parent0[Int($0)] == Self.noParent && $0 != mainRoot }
        guard !orphans.isEmpty else { return }
        scratchPool.withScratch(slots: n) { scratch in
            var i = 0
            while i < orphans.count {
                let r = orphans[i]
                i += 1
                guard !inMain[Int(r)], parent0[Int(r)] == Self.noParent else { continue }
                attach(r, inMain: &inMain, orphans: &orphans, scratch: scratch)
                // r's subtree joins the main tree.
                var stack = [r]
                while let v = stack.popLast() {
                    inMain[Int(v)] = true
                    for y in neighbors(v, 0) where parent0[Int(y)] == v && !inMain[Int(y)] { stack.append(y) }
                }
            }
        }
    }

    /// Attaches root `r` (of a tree other than the main one) below its nearest main-tree node
    /// with room: that node goes first in r's list and r into its list, both kept by pruning.
    private func attach(_ r: UInt32, inMain: inout [Bool], orphans: inout [UInt32], scratch: SearchScratch) {
        let q = codec.query(fromRow: row(r), buffer: scratch.queryBuffer(bytes: codec.rowBytes))
        let start = greedyDescent(q, from: UInt32(entryPoint), topLevel: Int(maxLevel), downTo: 1)
        let main = inMain
        let found = main.withUnsafeBufferPointer { m in
            searchLayer(q, entry: start, ef: parameters.efConstruction, level: 0, scratch: scratch, excluding: r,
                        filter: SlotFilter(allows: { m[Int($0)] }, twoHop: false))
        }
        // A copy of r's vector first (r and its subtree then rejoin their plateau), else the
        // nearest node with room that is not a copy.
        var parent: UInt32?
        let twin = found.first.map(keySlot).flatMap { codec.identical(row($0), row(r)) ? $0 : nil }
        if let twin, neighbors(r, 0).allSatisfy({ parent0[Int($0)] == r }) {
            parent = takeChild(twin, for: r, limit: childLimit, locks: nil) ? twin
                : descendToRoom(from: twin, for: r, twinOf: twin, locks: nil)
        }
        for key in found where parent == nil && !isTwin(keySlot(key)) && !codec.identical(row(keySlot(key)), row(r))
            && takeChild(keySlot(key), for: r, limit: childLimit, locks: nil) {
            parent = keySlot(key)
        }
        let a = parent ?? descendToRoom(from: found.first.map(keySlot) ?? UInt32(entryPoint), for: r, twinOf: nil, locks: nil)
        var list = neighbors(r, 0).filter { $0 != a }
        if list.count >= maxM0 {
            // Make room: r's weakest link that is not to a child of r; if all are children
            // (possible only in a loaded tree), let the last one go and attach it later.
            let evictable = list.indices.filter { parent0[Int(list[$0])] != r }
            if let worst = evictable.min(by: { scoreRows(r, list[$0]) < scoreRows(r, list[$1]) }) {
                list.remove(at: worst)
            } else {
                let y = list.removeLast()
                parent0[Int(y)] = Self.noParent
                childCount[Int(r)] -= 1
                orphans.append(y)
            }
        }
        list.insert(a, at: 0)
        setNeighbors(r, 0, list)
        twinFlags[Int(r)] = twinRule(r) ? 1 : 0
        addLink(from: a, to: r, level: 0, locks: nil)
    }

    /// Rebuilds the tree of a loaded graph from its lists: the entry point is the root, and
    /// any other node's parent is its first layer-0 link when that node links back. In a
    /// file written with the tree this gives back exactly the tree in memory. Cycles (only
    /// in older or damaged files) are cut; more than one root means the file predates the
    /// tree or is damaged, and the next change repairs it (`connect()`).
    func deriveTree() {
        let n = slotCount
        for s in 0..<UInt32(n) {
            parent0[Int(s)] = Self.noParent
            guard !isFree(s), Int32(s) != entryPoint else { continue }
            let list = linkList(s, 0)
            guard list[0] > 0 else { continue }
            let c = list[1]
            if Int(c) < n && !isFree(c) && layer0(of: c, contains: s) { parent0[Int(s)] = c }
        }
        // 0 unseen, 1 on the current walk, 2 done.
        var color = [UInt8](repeating: 0, count: n)
        var path: [UInt32] = []
        for s in 0..<UInt32(n) where color[Int(s)] == 0 {
            path.removeAll(keepingCapacity: true)
            var v = s
            while color[Int(v)] == 0 {
                color[Int(v)] = 1
                path.append(v)
                let p = parent0[Int(v)]
                if p == Self.noParent { break }
                if color[Int(p)] == 1 {
                    parent0[Int(v)] = Self.noParent
                    break
                }
                v = p
            }
            for u in path { color[Int(u)] = 2 }
        }
        for s in 0..<n { childCount[s] = 0 }
        var roots = 0
        for s in 0..<UInt32(n) where !isFree(s) {
            let p = parent0[Int(s)]
            if p == Self.noParent { roots += 1 } else { childCount[Int(p)] += 1 }
        }
        treeNeedsRepair = roots > 1 || (entryPoint >= 0 && parent0[Int(entryPoint)] != Self.noParent)
        refreshTwinFlags()
    }

    // MARK: Compaction

    /// Removes tombstones for good: every live node that links to one gets its list rebuilt
    /// by the neighbour heuristic from its live links plus the live nodes its deleted links
    /// led to (two hops through chains of tombstones), keeping its tree links; then the
    /// deleted slots are unlinked and freed for reuse, and the subtrees that hung below them
    /// are attached again (`connect()`). Also repairs a graph whose tree is damaged, so it
    /// is worth calling when `checkIntegrity()` finds unreachable nodes. Marks every changed
    /// slot dirty. Returns the number of slots freed.
    ///
    /// Cost: a few heuristic selections per node that linked to a tombstone, plus one pass
    /// over all lists; call it when tombstones pass some fraction (e.g. 10%) of the index.
    @discardableResult
    public func compact() -> Int {
        let deletedState = SlotState.deleted.rawValue
        guard tombstones > 0 else {
            connect()
            return 0
        }
        // Tree edges to and from tombstones go; their children become roots of subtrees. (A
        // twin orphaned so keeps its flag until relinked: it keeps a twin's list, and `connect`
        // hangs it below another copy of its vector.)
        for s in 0..<slotCount where states[s] != SlotState.free.rawValue {
            let p = parent0[s]
            guard p != Self.noParent else { continue }
            if states[s] == deletedState || states[Int(p)] == deletedState {
                if states[Int(p)] != deletedState { childCount[Int(p)] -= 1 }
                parent0[s] = Self.noParent
            }
        }
        for s in 0..<UInt32(slotCount) where isLive(s) {
            for l in 0...Int(levels[Int(s)]) {
                let list = neighbors(s, l)
                guard list.contains(where: { states[Int($0)] == deletedState }) else { continue }
                setNeighbors(s, l, relinkCandidates(for: s, level: l, list: list))
            }
        }
        for s in 0..<UInt32(slotCount) where parent0[Int(s)] == Self.noParent { twinFlags[Int(s)] = 0 }
        var freed = 0
        for s in 0..<UInt32(slotCount) where states[Int(s)] == deletedState {
            states[Int(s)] = SlotState.free.rawValue
            ids[Int(s)] = 0
            childCount[Int(s)] = 0
            twinFlags[Int(s)] = 0
            shapeSlot(s, level: 0)
            row(s).initializeMemory(as: UInt8.self, repeating: 0, count: codec.rowBytes)
            freeSlots.append(s)
            freed += 1
        }
        freeSlots.sort(by: >)
        tombstones = 0
        if entryPoint >= 0 && !isLive(UInt32(entryPoint)) { chooseEntryPoint() }
        connect()
        refreshTwinFlags()
        return freed
    }

    /// The new link list of live `s` at `level` whose current `list` holds tombstones: its
    /// tree links (parent first), then the heuristic over the rest.
    private func relinkCandidates(for s: UInt32, level l: Int, list: [UInt32]) -> [UInt32] {
        let deletedState = SlotState.deleted.rawValue
        var reserved: [UInt32] = []
        if l == 0 {
            let p = parent0[Int(s)]
            if p != Self.noParent { reserved.append(p) }
            reserved += list.filter { parent0[Int($0)] == s }
        }
        // A twin keeps just its tree links (searches walk twins apart from the beam).
        if isTwin(s) { return reserved }
        var seen = Set<UInt32>(reserved)
        seen.insert(s)
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
        var keys = pool.map { packKey(scoreRows(s, $0), $0) }.sorted(by: >)
        // The heuristic rarely keeps candidates beyond the best 4·cap; bound its cost.
        if keys.count > 4 * cap(level: l) { keys.removeLast(keys.count - 4 * cap(level: l)) }
        return selectNeighbors(keys, max: cap(level: l), keeping: reserved)
    }

    /// Entry point = a live node of the highest level (lowest slot among equals).
    private func chooseEntryPoint() {
        entryPoint = -1
        maxLevel = -1
        for s in 0..<slotCount where isLive(UInt32(s)) && !isTwin(UInt32(s)) && levels[s] > maxLevel {
            entryPoint = Int32(s)
            maxLevel = levels[s]
        }
    }

    /// Live slots not reachable on layer 0 from the entry point (breadth-first over all
    /// links): the check that does not trust the tree.
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
