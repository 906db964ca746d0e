// Parallel construction: many inserts linked at once on several threads.
//
// The scheme is hnswlib's (a lock per node guards its neighbour lists; a global lock guards
// the entry point), written anew: slots, levels and vectors are assigned serially first, so
// during the parallel phase no array grows and only link lists change. Every list is read
// and written under its node's lock, and a thread holds at most one node lock at a time, so
// there is no lock order to get wrong. The in-link bookkeeping of the serial path
// (inDegree0, ensureInLink, keepOnlyInLinks) needs a consistent global view, so the
// parallel phase skips it; afterwards the in-degrees are recounted and any node left
// unreachable is linked again serially (`reconnectUnreachable`), which is what the serial
// guards achieve one insert at a time.
import CM3Kernels
import Dispatch

extension HNSWIndex {
    /// Inserts `ids.count` unit vectors (`vectors`: ids.count × dimension floats, row i for
    /// ids[i]) on `threads` threads. The graph differs from inserting them one by one (the
    /// order in which nodes link is up to the scheduler), with the same quality.
    ///
    ///     try index.insertBatch(ids: [1, 2, 3], vectors: rows, threads: 2)   // rows: 3 × dim
    ///
    /// Validates everything before changing anything: throws `.duplicateID` (live, or twice
    /// in the batch), `.dimensionMismatch`, `.nonFiniteValue`, `.notNormalized` or
    /// `.capacityExceeded`.
    public func insertBatch(ids newIDs: [Int64], vectors v: UnsafeBufferPointer<Float>, threads: Int) throws(IndexError) {
        guard v.count == newIDs.count * dim else {
            throw .dimensionMismatch(expected: newIDs.count * dim, actual: v.count)
        }
        if newIDs.isEmpty { return }
        var seen = Set<Int64>(minimumCapacity: newIDs.count)
        for (i, id) in newIDs.enumerated() {
            guard slotOfID[id] == nil, seen.insert(id).inserted else { throw .duplicateID(id) }
            let row = UnsafeBufferPointer(rebasing: v[i * dim ..< (i + 1) * dim])
            try validateVector(row, dimension: dim)
            try validateNorm(row.baseAddress!)
        }
        if liveCount == 0 && tombstones > 0 { compact() }
        guard slotCount - freeSlots.count + newIDs.count <= Self.slotLimit else {
            throw .capacityExceeded(limit: Self.slotLimit)
        }

        // Serial: slots, levels, vectors; nothing is linked yet.
        reserve(slotCount + Swift.max(0, newIDs.count - freeSlots.count))
        var work: [(slot: UInt32, level: Int)] = []
        work.reserveCapacity(newIDs.count)
        for (i, id) in newIDs.enumerated() {
            work.append(claimSlot(id: id, vector: v.baseAddress! + i * dim))
        }
        var first = 0
        if entryPoint < 0 {
            entryPoint = Int32(work[0].slot)
            maxLevel = Int32(work[0].level)
            first = 1
        }

        // Parallel: link. locks[s] guards slot s's lists; locks[slotCount] the entry point.
        let n = slotCount
        let locks = UnsafeMutablePointer<UInt8>.allocate(capacity: n + 1)
        locks.initialize(repeating: 0, count: n + 1)
        let touched = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        touched.initialize(repeating: 0, count: n)
        let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        next.initialize(to: Int64(first))
        defer {
            locks.deallocate()
            touched.deallocate()
            next.deallocate()
        }
        let shared = BatchShared(items: work, next: next, locks: locks, touched: touched)
        DispatchQueue.concurrentPerform(iterations: Swift.max(1, threads)) { _ in
            scratchPool.withScratch(slots: n) { scratch in
                while true {
                    let i = m3ix_fetch_add(shared.next, 1)
                    if i >= shared.items.count { break }
                    let item = shared.items[Int(i)]
                    linkConcurrent(item.slot, level: item.level, scratch: scratch, locks: shared.locks,
                                   global: shared.locks + n, touched: shared.touched)
                }
            }
        }

        // Serial: recount in-links, persist what changed, relink anything unreachable.
        for s in 0..<n { inDegree0[s] = 0 }
        for s in 0..<n {
            let p = links0 + s * (maxM0 + 1)
            for j in 0..<Int(p[0]) { inDegree0[Int(p[1 + j])] += 1 }
            if touched[s] != 0 { dirty.insert(UInt32(s)) }
        }
        reconnectUnreachable()
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

    /// `link` for the parallel phase: the same search, heuristic and back-links, with every
    /// list read and written under its node's lock and no in-degree bookkeeping.
    private func linkConcurrent(_ slot: UInt32, level: Int, scratch: SearchScratch,
                                locks: UnsafeMutablePointer<UInt8>, global: UnsafeMutablePointer<UInt8>,
                                touched: UnsafeMutablePointer<UInt8>) {
        let q = UnsafePointer(vec(slot))
        m3ix_spin_lock(global)
        var cur = UInt32(entryPoint)
        let top = Int(maxLevel)
        m3ix_spin_unlock(global)
        if level < top {
            cur = greedyDescent(q, from: cur, topLevel: top, downTo: level + 1, locks: locks, listCopy: scratch.listCopy)
        }
        for l in stride(from: Swift.min(level, top), through: 0, by: -1) {
            let found = searchLayer(q, entry: cur, ef: parameters.efConstruction, level: l, scratch: scratch,
                                    excluding: slot, locks: locks)
            guard let best = found.first else { continue }
            let selected = selectNeighbors(found, max: maxM)
            m3ix_spin_lock(locks + Int(slot))
            let p = linkList(slot, l)
            p[0] = UInt32(selected.count)
            for (i, x) in selected.enumerated() { p[1 + i] = x }
            m3ix_spin_unlock(locks + Int(slot))
            for x in selected { addLinkLocked(from: x, to: slot, level: l, lock: locks + Int(x), touched: touched) }
            cur = keySlot(best)
        }
        m3ix_spin_lock(global)
        if level > Int(maxLevel) {
            entryPoint = Int32(slot)
            maxLevel = Int32(level)
        }
        m3ix_spin_unlock(global)
    }

    /// `addLink` under n's lock, without in-degree bookkeeping.
    private func addLinkLocked(from n: UInt32, to target: UInt32, level: Int, lock: UnsafeMutablePointer<UInt8>,
                               touched: UnsafeMutablePointer<UInt8>) {
        let limit = cap(level: level)
        m3ix_spin_lock(lock)
        defer { m3ix_spin_unlock(lock) }
        touched[Int(n)] = 1
        let p = linkList(n, level)
        let count = Int(p[0])
        for i in 0..<count where p[1 + i] == target { return }
        if count < limit {
            p[1 + count] = target
            p[0] = UInt32(count + 1)
            return
        }
        let selected = prunedNeighbors(of: n, list: p, adding: target, limit: limit)
        p[0] = UInt32(selected.count)
        for (i, x) in selected.enumerated() { p[1 + i] = x }
    }
}

/// What the construction threads share: the work list (read-only) and raw pointers whose
/// memory is guarded by the spin locks (or, for `next`, atomic).
private struct BatchShared: @unchecked Sendable {
    let items: [(slot: UInt32, level: Int)]
    let next: UnsafeMutablePointer<Int64>
    let locks: UnsafeMutablePointer<UInt8>
    let touched: UnsafeMutablePointer<UInt8>
}
