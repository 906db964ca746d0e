// Parallel construction: many inserts linked at once on several threads.
//
// The scheme is hnswlib's (a lock per node guards its neighbour lists; a global lock guards
// the entry point), written anew: slots, levels and vectors are assigned serially first, so
// during the parallel phase no array grows and only link lists and the per-slot tree and
// dirty bytes change. Linking is the serial `link` itself, given the locks: every list is
// read and written under its node's lock, and a thread holds at most one node lock at a
// time, so there is no lock order to get wrong. A new node's parent in the spanning tree is
// set before anything links to it and its child count is taken under the parent's lock, so
// the tree holds here exactly as in serial inserts: nothing is recounted or relinked after.
import CM3Kernels
import Dispatch

extension HNSWIndex {
    /// Inserts `ids.count` unit vectors (`vectors`: ids.count × dimension floats, row i for
    /// ids[i]) on `threads` threads. The graph differs from inserting them one by one (the
    /// order in which nodes link is up to the scheduler), with the same quality and the same
    /// guarantees; it marks about as many slots dirty.
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
        try prepareForInserts(count: newIDs.count)

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
        // One thread: the serial path, without lock traffic.
        if threads <= 1 || work.count - first < 2 {
            scratchPool.withScratch(slots: slotCount) { scratch in
                for item in work[first...] {
                    if link(item.slot, level: item.level, scratch: scratch, locks: nil) { dropUpperLayers(item.slot) }
                }
            }
            return
        }

        // Parallel: link. locks[s] guards slot s's lists; locks[slotCount] the entry point.
        let n = slotCount
        let locks = UnsafeMutablePointer<UInt8>.allocate(capacity: n + 1)
        locks.initialize(repeating: 0, count: n + 1)
        let twins = UnsafeMutablePointer<UInt8>.allocate(capacity: work.count)
        twins.initialize(repeating: 0, count: work.count)
        let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        next.initialize(to: Int64(first))
        defer {
            locks.deallocate()
            twins.deallocate()
            next.deallocate()
        }
        let shared = BatchShared(items: work, next: next, locks: locks, twins: twins)
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            scratchPool.withScratch(slots: n) { scratch in
                while true {
                    let i = m3ix_fetch_add(shared.next, 1)
                    if i >= shared.items.count { break }
                    let item = shared.items[Int(i)]
                    if link(item.slot, level: item.level, scratch: scratch, locks: shared.locks) { shared.twins[Int(i)] = 1 }
                }
            }
        }
        // Twins keep level 0; their upper lists were never linked, so they go now, serially
        // (the level array must not change while the threads read it).
        for (i, item) in work.enumerated() where twins[i] != 0 { dropUpperLayers(item.slot) }
        makeRoot(UInt32(entryPoint))
    }
}

/// What the construction threads share: the work list (read-only) and raw pointers whose
/// memory is guarded by the spin locks (or, for `next`, atomic; `twins[i]` is written only
/// by the thread that links item i).
private struct BatchShared: @unchecked Sendable {
    let items: [(slot: UInt32, level: Int)]
    let next: UnsafeMutablePointer<Int64>
    let locks: UnsafeMutablePointer<UInt8>
    let twins: UnsafeMutablePointer<UInt8>
}
