// A deep copy of the graph: what lets searches run on one version while a writer builds
// the next (M3Search's published snapshots).
//
// Inserting into a graph rewrites its neighbours' lists, may reallocate every buffer and
// reuses freed slots, so a graph that searches read must never change. The writer changes
// a copy instead and publishes it. The copy is a flat memcpy of the per-slot buffers (no
// construction is re-run): it costs time and memory linear in the slot count, about
// slotCount × (row bytes + 4·(2M + 1) + 8) bytes plus the upper layers, the id map and
// arrays, which Swift copies when the writer first changes them.

extension HNSWIndex {
    /// An independent graph equal to this one: same slots, links, vectors, counters, level
    /// generator state and dirty flags, so changes to either leave the other as it was and
    /// the same changes applied to both give the same graph.
    ///
    ///     let next = published.copy()
    ///     try next.insert(id: 7, vector: v)   // `published` is untouched
    ///
    /// Reading `self` while copying is safe; changing it meanwhile is not (like any read).
    public func copy() -> HNSWIndex {
        // The parameters were validated when `self` was made, so this cannot throw; `try?`
        // and the fallback keep the call total without a trap.
        guard let c = try? HNSWIndex(parameters: parameters) else { return self }
        c.efSearch = efSearch
        c.reserve(slotCount)  // capacity ≥ slotCount (and at least 16)
        let n = slotCount
        c.rows.copyMemory(from: rows, byteCount: n * codec.rowBytes)
        c.links0.initialize(from: links0, count: n * (maxM0 + 1))
        c.states.initialize(from: states, count: n)
        c.parent0.initialize(from: parent0, count: n)
        c.childCount.initialize(from: childCount, count: n)
        c.twinFlags.initialize(from: twinFlags, count: n)
        c.dirtyFlags.initialize(from: dirtyFlags, count: n)
        // Upper layers are allocated per node (about 1 node in M has any).
        c.upperLinks = upperLinks.enumerated().map { s, p in
            guard let p, levels[s] > 0 else { return nil }
            let count = Int(levels[s]) * (maxM + 1)
            let q = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
            q.initialize(from: p, count: count)
            return q
        }
        // Value types: shared until the copy's first change to them.
        c.levels = levels
        c.ids = ids
        c.slotOfID = slotOfID
        c.freeSlots = freeSlots
        c.slotCount = n
        c.liveCount = liveCount
        c.tombstones = tombstones
        c.entryPoint = entryPoint
        c.maxLevel = maxLevel
        c.rng = rng
        c.treeNeedsRepair = treeNeedsRepair
        return c
    }
}
