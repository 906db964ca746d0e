#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The per-search working memory of the graph search: a visited list with an epoch
// counter (hnswlib's VisitedList: clearing is one increment, not a pass over N slots),
// and two heaps of packed (score, slot) keys. Scratches are pooled so searches allocate
// nothing once warm, and each concurrent search borrows its own.

// MARK: - Packed keys

/// (score, slot) packed into one UInt64 whose unsigned order is "score ascending, then
/// slot descending": the float's bits are mapped to an order-preserving unsigned integer
/// in the high half and the complemented slot fills the low half. So the best candidate
/// (highest score, lowest slot on ties) is the largest key, and every comparison in the
/// search is one integer compare with a deterministic tie-break.
@inline(__always)
func packKey(_ score: Float, _ slot: UInt32) -> UInt64 {
    let bits = score.bitPattern
    let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    return UInt64(ordered) << 32 | UInt64(~slot)
}

@inline(__always)
func keySlot(_ key: UInt64) -> UInt32 { ~UInt32(truncatingIfNeeded: key) }

@inline(__always)
func keyScore(_ key: UInt64) -> Float {
    let ordered = UInt32(truncatingIfNeeded: key >> 32)
    return Float(bitPattern: ordered & 0x8000_0000 != 0 ? ordered & 0x7fff_ffff : ~ordered)
}

// MARK: - Heap

/// A binary min-heap of keys in manually managed storage. A max-heap stores complemented
/// keys. It is a struct used as a local variable of the search, so debug builds pay no
/// dynamic exclusivity checks in the inner loop (class properties would); the owner hands
/// the storage back to its scratch afterwards and frees it in the end.
struct KeyHeap {
    private(set) var base: UnsafeMutablePointer<UInt64>
    var count = 0
    private(set) var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func deallocate() { base.deallocate() }

    /// The smallest key. Precondition: count > 0.
    var min: UInt64 { base[0] }

    mutating func push(_ key: UInt64) {
        if count == capacity {
            let grown = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity * 2)
            grown.update(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        let b = base
        var i = count
        count = i + 1
        while i > 0 {
            let parent = (i - 1) >> 1
            let p = b[parent]
            if p <= key { break }
            b[i] = p
            i = parent
        }
        b[i] = key
    }

    @discardableResult
    mutating func popMin() -> UInt64 {
        let b = base
        let top = b[0]
        let n = count - 1
        count = n
        if n > 0 {
            let last = b[n]
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                let r = l + 1
                let c = r < n && b[r] < b[l] ? r : l
                let cv = b[c]
                if last <= cv { break }
                b[i] = cv
                i = c
            }
            b[i] = last
        }
        return top
    }
}

// MARK: - Scratch

final class SearchScratch {
    /// marks[slot] == epoch ⇔ visited in the current search.
    private(set) var marks: UnsafeMutablePointer<UInt16>
    private var markCapacity: Int
    private(set) var epoch: UInt16 = 0
    /// Candidates to expand: complemented keys, so popMin yields the best.
    var candidates = KeyHeap(capacity: 256)
    /// The best `ef` found: plain keys, so min is the worst of them.
    var results = KeyHeap(capacity: 256)
    /// A copy of one neighbour list ([count, n_1 …], ≤ 2·mLimit + 1), taken under the node's
    /// lock while other threads may rewrite the list (parallel construction).
    let listCopy = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * HNSWIndex.mLimit + 1)

    /// One encoded query (or the query made from a node's row), grown on demand.
    private var query: UnsafeMutableRawPointer?
    private var queryBytes = 0

    /// A buffer of at least `bytes` bytes for an encoded query, 64-byte aligned.
    func queryBuffer(bytes: Int) -> UnsafeMutableRawPointer {
        if let query, queryBytes >= bytes { return query }
        query?.deallocate()
        let q = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes, 64), alignment: 64)
        query = q
        queryBytes = bytes
        return q
    }

    init(slots: Int) {
        markCapacity = Swift.max(slots, 64)
        marks = .allocate(capacity: markCapacity)
        marks.initialize(repeating: 0, count: markCapacity)
    }

    deinit {
        marks.deallocate()
        listCopy.deallocate()
        query?.deallocate()
        candidates.deallocate()
        results.deallocate()
    }

    /// Starts a search over `slots` slots: a new epoch (growing the marks if the index grew)
    /// and empty heaps.
    func beginSearch(slots: Int) {
        if slots > markCapacity {
            marks.deallocate()
            markCapacity = Swift.max(slots, markCapacity * 2)
            marks = .allocate(capacity: markCapacity)
            marks.initialize(repeating: 0, count: markCapacity)
            epoch = 0
        }
        epoch &+= 1
        if epoch == 0 {  // wrapped: old marks could alias the new epoch
            marks.update(repeating: 0, count: markCapacity)
            epoch = 1
        }
        candidates.count = 0
        results.count = 0
    }
}

/// Hands out scratches; a mutex guards the free list so concurrent readers each get one.
final class ScratchPool: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var idle: [SearchScratch] = []

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withScratch<R>(slots: Int, _ body: (SearchScratch) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        let scratch = idle.popLast()
        pthread_mutex_unlock(mutex)
        let s = scratch ?? SearchScratch(slots: slots)
        defer {
            pthread_mutex_lock(mutex)
            if idle.count < 16 { idle.append(s) }  // bounds idle memory (2 bytes per slot each)
            pthread_mutex_unlock(mutex)
        }
        return try body(s)
    }
}
