/// The best `k` hits seen so far, in result order (score descending, id ascending).
///
/// A binary heap whose root is the worst kept hit, so a new hit costs one comparison
/// unless it beats the root. Used by the exact scorers (brute force, sparse).
struct TopK {
    let k: Int
    /// heap[0] is the hit that ranks last; every parent ranks after (or equal to) its children.
    private(set) var heap: [IndexHit] = []

    init(k: Int) {
        self.k = Swift.max(k, 0)
        heap.reserveCapacity(Swift.min(self.k, 4096))
    }

    var isFull: Bool { heap.count >= k }
    var count: Int { heap.count }
    /// The hit that currently ranks last. Precondition: not empty.
    var worst: IndexHit { heap[0] }

    /// Whether a hit with this score and id would be kept.
    @inline(__always)
    func accepts(score: Float, id: Int64) -> Bool {
        if heap.count < k { return k > 0 }
        return IndexHit.ranksBefore(IndexHit(id: id, score: score), heap[0])
    }

    mutating func offer(_ hit: IndexHit) {
        if heap.count < k {
            heap.append(hit)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                // The parent must rank after the child; swap while the child ranks later.
                guard IndexHit.ranksBefore(heap[parent], heap[i]) else { break }
                heap.swapAt(parent, i)
                i = parent
            }
        } else if k > 0, IndexHit.ranksBefore(hit, heap[0]) {
            heap[0] = hit
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                let r = l + 1
                // Pick the child that ranks later (the worse one).
                let c = r < n && IndexHit.ranksBefore(heap[l], heap[r]) ? r : l
                // Swap while the moved-down hit ranks before (is better than) the worse child.
                guard IndexHit.ranksBefore(heap[i], heap[c]) else { break }
                heap.swapAt(c, i)
                i = c
            }
        }
    }

    /// The kept hits, best first.
    func sorted() -> [IndexHit] {
        heap.sorted(by: IndexHit.ranksBefore)
    }
}

/// Checks that `v` has `dimension` finite values.
func validateVector(_ v: UnsafeBufferPointer<Float>, dimension: Int) throws(IndexError) {
    guard v.count == dimension else { throw .dimensionMismatch(expected: dimension, actual: v.count) }
    for i in 0..<v.count where !v[i].isFinite { throw .nonFiniteValue(position: i) }
}
