/// An inverted index over sparse lexical vectors (BGE-M3's token weights), scored by
/// Σ_t q_t · w_{d,t} and searched exactly with MaxScore dynamic pruning.
///
/// Each token id has a posting list: document ids ascending, their weights, and the
/// list's maximum weight. A query term's maximum possible contribution is q_t · max_t; once
/// k results are held, terms whose summed maxima cannot reach the k-th score become
/// "non-essential": documents appearing only in them are skipped, and their lists are only
/// probed for documents the other lists bring up (Turtle & Flood 1995, MaxScore).
///
/// Results are exact and deterministic: score descending, ties by document id ascending,
/// and every score is summed in one fixed order (query tokens ascending), so `search` and
/// `bruteForceSearch` agree bit for bit. Pruning decisions use upper bounds with a margin
/// for float rounding, so they never drop a document that belongs in the top k.
///
///     var sparse = SparseIndex()
///     try sparse.add(document: 7, terms: [(token: 2054, weight: 0.31), (token: 9, weight: 0.12)])
///     let hits = try sparse.search([(token: 2054, weight: 0.4)], k: 10)
///
/// It is a value type: readers can search a copy while the writer changes the original
/// (copies share storage until written). Persist it as one row per token: after changes
/// write `postingBytes(token:)` for each token in `dirtyTokens` (nil: delete the row), then
/// `clearDirty()`; load with `SparseIndex.Loader`, or read lists per query token with
/// `SparseIndex.onDemand()` and `withLists(for:…)` (SparseIndex+OnDemand.swift).
public struct SparseIndex: Sendable {
    /// One token's weight in a sparse vector.
    public typealias Term = (token: Int32, weight: Float)

    /// Documents containing one token: ids ascending, with their weights (all > 0).
    package struct PostingList: Sendable, Equatable {
        package var docs: [Int64] = []
        package var weights: [Float] = []
        package var maxWeight: Float = 0
        /// Block maxima (in memory only, derived from docs/weights): the blocks of
        /// 2^blockShift document ids this list has postings in, ascending, and the largest
        /// weight in each. They give the search bounds per id range, far tighter than
        /// `maxWeight` on long lists.
        package var blocks: [Int64] = []
        package var blockMaxima: [Float] = []
    }

    /// Document ids per block of the block maxima: 2^10.
    package static let blockShift: Int64 = 7

    package var postings: [Int32: PostingList] = [:]
    /// Each document's tokens (ascending): what `remove` must visit. nil after a load until
    /// the first change: searches never need it, and deriving it from the postings (one
    /// dictionary append per posting, 6M at 100k chunks of 60 terms) was the largest part of
    /// opening an index. The first `add` or `remove` derives it (`derivedTokensOfDocument`).
    package internal(set) var documentTokens: [Int64: [Int32]]? = [:]
    var dirty: Set<Int32> = []
    /// Non-nil for an index opened without its postings (`SparseIndex.onDemand()`): then
    /// `postings` is empty, and a query reads the lists of its own tokens from the file
    /// (`withLists(for:read:)`), kept here for the following queries. Only searches run on
    /// such an index; a writer loads every list first (SparseIndex+OnDemand.swift).
    package internal(set) var onDemand: PostingCache?

    public init() {}

    /// Whether the posting lists are read on demand (not all held: counts, `contains` and
    /// changes need a full load).
    package var isOnDemand: Bool { onDemand != nil }

    /// Each document's tokens, ascending (derived from the postings when not held yet).
    package var tokensOfDocument: [Int64: [Int32]] { documentTokens ?? derivedTokensOfDocument() }

    /// Each document's tokens from the posting lists: tokens ascending, so each list comes
    /// out sorted.
    func derivedTokensOfDocument() -> [Int64: [Int32]] {
        var out: [Int64: [Int32]] = [:]
        for token in postings.keys.sorted() {
            for doc in postings[token]!.docs { out[doc, default: []].append(token) }
        }
        return out
    }

    /// Makes `documentTokens` present before a change (changed in place afterwards: no copy
    /// of the dictionary is held while it is).
    private mutating func holdDocumentTokens() {
        if documentTokens == nil { documentTokens = derivedTokensOfDocument() }
    }

    /// Documents held (those with at least one positive weight).
    public var documentCount: Int {
        if let documentTokens { return documentTokens.count }
        var seen = Set<Int64>()
        for list in postings.values { seen.formUnion(list.docs) }
        return seen.count
    }
    /// Tokens with a posting list.
    public var tokenCount: Int { postings.count }
    /// All tokens with a posting list, ascending (for writing a full copy).
    public var tokens: [Int32] { postings.keys.sorted() }

    public func contains(document: Int64) -> Bool {
        if let documentTokens { return documentTokens[document] != nil }
        return postings.values.contains { $0.index(of: document) != nil }
    }

    // MARK: Changes

    /// Adds a document's sparse vector. Zero weights are dropped; a document with no positive
    /// weight is not stored (there is nothing to match it by).
    ///
    /// Throws `.duplicateID` if the document is already present, `.duplicateToken` if a
    /// token repeats, `.invalidWeight` for a negative or non-finite weight.
    public mutating func add(document: Int64, terms: [Term]) throws(IndexError) {
        precondition(onDemand == nil, "SparseIndex.add on an index opened on demand: load every posting list first")
        holdDocumentTokens()
        guard documentTokens![document] == nil else { throw .duplicateID(document) }
        var sorted = terms.sorted { $0.token < $1.token }
        for i in sorted.indices {
            let t = sorted[i]
            guard t.weight.isFinite && t.weight >= 0 else { throw .invalidWeight(token: t.token, weight: t.weight) }
            if i > 0 && sorted[i - 1].token == t.token { throw .duplicateToken(t.token) }
        }
        sorted.removeAll { $0.weight == 0 }
        guard !sorted.isEmpty else { return }
        for t in sorted {
            postings[t.token, default: PostingList()].insert(document, weight: t.weight)
            dirty.insert(t.token)
        }
        documentTokens![document] = sorted.map(\.token)
    }

    /// Adds a document given as token → weight (the shape BGE-M3's lexical weights come in).
    public mutating func add(document: Int64, weights: [Int32: Float]) throws(IndexError) {
        try add(document: document, terms: weights.map { (token: $0.key, weight: $0.value) })
    }

    /// Removes a document from every posting list it is in; false if it is not present.
    @discardableResult
    public mutating func remove(document: Int64) -> Bool {
        precondition(onDemand == nil, "SparseIndex.remove on an index opened on demand: load every posting list first")
        holdDocumentTokens()
        guard let tokens = documentTokens!.removeValue(forKey: document) else { return false }
        for t in tokens {
            postings[t]!.remove(document)
            if postings[t]!.docs.isEmpty { postings[t] = nil }
            dirty.insert(t)
        }
        return true
    }

    // MARK: Search

    /// Sorts query terms by token, sums repeated tokens, drops zero weights.
    /// Throws `.invalidWeight` for a negative or non-finite weight.
    static func canonicalQuery(_ query: [Term]) throws(IndexError) -> [Term] {
        for t in query where !(t.weight.isFinite && t.weight >= 0) { throw .invalidWeight(token: t.token, weight: t.weight) }
        // Stable sort keeps the caller's order among repeats, so their sum is reproducible.
        let sorted = query.enumerated().sorted { ($0.element.token, $0.offset) < ($1.element.token, $1.offset) }.map(\.element)
        var out: [Term] = []
        for t in sorted {
            if let last = out.last, last.token == t.token {
                out[out.count - 1].weight += t.weight
            } else {
                out.append(t)
            }
        }
        out.removeAll { $0.weight == 0 }
        return out
    }

    /// The exact top k documents by Σ_t q_t · w_{d,t}, best first (ties: lower id first),
    /// among those `filter` allows. Only documents sharing a token with the query are
    /// candidates; fewer than k come back when fewer match. Throws `.invalidWeight` for a
    /// negative or non-finite query weight.
    ///
    /// The filter acts inside the traversal: a rejected document is skipped before it is
    /// scored and never raises the pruning threshold, so the result is the exact top k of
    /// the allowed documents. When a set filter is small against the postings to walk, its
    /// documents are scored directly instead (a binary search per query term each).
    public func search(_ query: [Term], k: Int, filter: IDFilter? = nil) throws(IndexError) -> [IndexHit] {
        let q = try Self.canonicalQuery(query)
        guard k > 0 else { return [] }
        if let allowed = filter?.allowedIDs, directScoringPays(q, allowed: allowed.count) {
            return scoreDirectly(q, documents: allowed, k: k)
        }

        // One cursor per query term that has a posting list. `rank` is the term's place in
        // the canonical (token-ascending) order in which scores are summed.
        struct Cursor {
            let rank: Int
            let weight: Float
            let docs: [Int64]
            let weights: [Float]
            let blocks: [Int64]
            let blockMaxima: [Float]
            var pos = 0
        }
        var cursors: [Cursor] = []
        for (rank, t) in q.enumerated() {
            guard let list = postings[t.token] else { continue }
            cursors.append(Cursor(rank: rank, weight: t.weight, docs: list.docs, weights: list.weights,
                                  blocks: list.blocks, blockMaxima: list.blockMaxima))
        }
        guard !cursors.isEmpty else { return [] }
        let termCount = cursors.count
        // The float score of a document can exceed the real-valued sum bounded here by
        // rounding, at most (terms − 1)·2⁻²⁴ relative; prune only below a 4× wider margin.
        let margin = 1 + Double(termCount + 2) * 0x1p-22

        var top = TopK(k: k)
        var threshold = -Double.infinity  // the k-th score once k are held
        // The current document's weight per canonical rank (0: absent; stored weights are > 0).
        var weightAtRankStorage = [Float](repeating: 0, count: q.count)
        // Per block: each cursor's bound there, the cursors ordered by it (ascending, so the
        // non-essential ones are a prefix of `order`), and prefix sums of the ordered bounds.
        var blockBoundStorage = [Double](repeating: 0, count: termCount)
        var blockCursor = [Int](repeating: 0, count: termCount)  // position in each list's blocks
        var orderStorage = Array(0..<termCount)
        var prefixStorage = [Double](repeating: 0, count: termCount + 1)
        let shift = Self.blockShift

        // The id space is walked in blocks of 2^blockShift ids. In each block, MaxScore runs
        // with the block maxima as bounds: a block whose bounds sum below the threshold is
        // skipped whole, and in the others fewer lists are essential than with list maxima.
        // Buffer pointers: writing cursor positions through arrays would check uniqueness
        // on every posting.
        cursors.withUnsafeMutableBufferPointer { cursors in
        weightAtRankStorage.withUnsafeMutableBufferPointer { weightAtRank in
        blockBoundStorage.withUnsafeMutableBufferPointer { bound in
        orderStorage.withUnsafeMutableBufferPointer { order in
        prefixStorage.withUnsafeMutableBufferPointer { prefix in
        var nextDoc = Int64.min  // every cursor is at a doc ≥ this
        while true {
            // The block of the smallest current doc over all lists (lagging cursors are
            // first moved to nextDoc).
            var first = Int64.max
            for i in 0..<termCount {
                let p = Self.seek(cursors[i].docs, from: cursors[i].pos, to: nextDoc)
                cursors[i].pos = p
                if p < cursors[i].docs.count { first = Swift.min(first, cursors[i].docs[p]) }
            }
            guard first != Int64.max else { break }
            let block = first >> shift
            let blockEnd = (block &+ 1) << shift  // first id of the next block (wraps only at the top block)
            let lastBlock = block == Int64.max >> shift
            nextDoc = lastBlock ? Int64.max : blockEnd
            var total = 0.0
            for i in 0..<termCount {
                let blocks = cursors[i].blocks
                var b = blockCursor[i]
                while b < blocks.count && blocks[b] < block { b += 1 }
                blockCursor[i] = b
                bound[i] = b < blocks.count && blocks[b] == block ? Double(cursors[i].weight) * Double(cursors[i].blockMaxima[b]) : 0
                total += bound[i]
            }
            if total * margin < threshold { continue }  // nothing in this block can enter the top k
            for i in 0..<termCount { order[i] = i }
            // Insertion sort: a handful of terms.
            for i in 1..<Swift.max(termCount, 1) {
                let x = order[i]
                var j = i
                while j > 0 && (bound[order[j - 1]], order[j - 1]) > (bound[x], x) { order[j] = order[j - 1]; j -= 1 }
                order[j] = x
            }
            for i in 0..<termCount { prefix[i + 1] = prefix[i] + bound[order[i]] }
            var firstEssential = 0  // order[..<firstEssential] are non-essential in this block
            while firstEssential < termCount && prefix[firstEssential + 1] * margin < threshold { firstEssential += 1 }

            while true {
                // The next document of this block: the smallest current id over the essential lists.
                var doc = Int64.max
                for e in firstEssential..<termCount {
                    let i = order[e]
                    if cursors[i].pos < cursors[i].docs.count {
                        let d = cursors[i].docs[cursors[i].pos]
                        if d < doc { doc = d }
                    }
                }
                guard doc != Int64.max, lastBlock || doc < blockEnd else { break }
                if let filter, !filter.allows(doc) {
                    for e in firstEssential..<termCount {
                        let i = order[e]
                        let p = cursors[i].pos
                        if p < cursors[i].docs.count && cursors[i].docs[p] == doc { cursors[i].pos = p + 1 }
                    }
                    continue
                }

                for r in weightAtRank.indices { weightAtRank[r] = 0 }
                var partial: Double = 0
                for e in firstEssential..<termCount {
                    let i = order[e]
                    let p = cursors[i].pos
                    guard p < cursors[i].docs.count, cursors[i].docs[p] == doc else { continue }
                    let w = cursors[i].weights[p]
                    weightAtRank[cursors[i].rank] = w
                    partial += Double(cursors[i].weight) * Double(w)
                    cursors[i].pos = p + 1
                }

                // Probe the non-essential lists, largest bound first, while the document can
                // still reach the threshold.
                var possible = (partial + prefix[firstEssential]) * margin >= threshold
                var e = firstEssential - 1
                while possible && e >= 0 {
                    let i = order[e]
                    let p = Self.seek(cursors[i].docs, from: cursors[i].pos, to: doc)
                    cursors[i].pos = p
                    if p < cursors[i].docs.count && cursors[i].docs[p] == doc {
                        let w = cursors[i].weights[p]
                        weightAtRank[cursors[i].rank] = w
                        partial += Double(cursors[i].weight) * Double(w)
                    }
                    possible = (partial + prefix[e]) * margin >= threshold
                    e -= 1
                }
                guard possible else { continue }

                // The exact score, summed in canonical order (as bruteForceSearch does).
                var score: Float = 0
                for r in 0..<q.count where weightAtRank[r] > 0 { score += q[r].weight * weightAtRank[r] }
                guard top.accepts(score: score, id: doc) else { continue }
                top.offer(IndexHit(id: doc, score: score))
                if top.isFull {
                    threshold = Double(top.worst.score)
                    while firstEssential < termCount && prefix[firstEssential + 1] * margin < threshold {
                        firstEssential += 1
                    }
                }
            }
            if lastBlock { break }
        }
        }
        }
        }
        }
        }
        return top.sorted()
    }

    /// Whether scoring `allowed` documents one by one (a binary search in each query term's
    /// list) costs less than walking the query terms' postings.
    func directScoringPays(_ q: [Term], allowed: Int) -> Bool {
        var postingsToWalk = 0, lookups = 0.0
        for t in q {
            guard let list = postings[t.token] else { continue }
            postingsToWalk += list.docs.count
            lookups += Double(allowed) * Double(Int.bitWidth - list.docs.count.leadingZeroBitCount + 1)  // ≈ log2 + 2
        }
        return lookups < Double(postingsToWalk)
    }

    /// The exact top k of `documents`, each scored by looking its weights up (summed in the
    /// canonical order, as `search` and `bruteForceSearch` sum them).
    func scoreDirectly(_ q: [Term], documents: Set<Int64>, k: Int) -> [IndexHit] {
        let lists = q.map { postings[$0.token] }
        var top = TopK(k: k)
        for doc in documents {
            var score: Float = 0
            var matched = false
            for (r, list) in lists.enumerated() {
                guard let list, let i = list.index(of: doc) else { continue }
                score += q[r].weight * list.weights[i]
                matched = true
            }
            if matched && top.accepts(score: score, id: doc) { top.offer(IndexHit(id: doc, score: score)) }
        }
        return top.sorted()
    }

    /// First position ≥ `from` whose doc is ≥ `target` (galloping, then binary search).
    package static func seek(_ docs: [Int64], from: Int, to target: Int64) -> Int {
        var lo = from
        guard lo < docs.count, docs[lo] < target else { return lo }
        var step = 1
        var hi = lo + 1
        while hi < docs.count && docs[hi] < target {
            lo = hi
            step *= 2
            hi = lo + step
        }
        hi = Swift.min(hi, docs.count)
        // docs[lo] < target; answer in (lo, hi].
        var a = lo + 1, b = hi
        while a < b {
            let mid = (a + b) / 2
            if docs[mid] < target { a = mid + 1 } else { b = mid }
        }
        return a
    }

    /// The reference scorer beside `search`: accumulates every posting of every query term
    /// (term at a time, tokens ascending, so each document's sum runs in the same order as
    /// `search`'s), then takes the top k. Same results, no pruning; for tests and audits.
    public func bruteForceSearch(_ query: [Term], k: Int, filter: IDFilter? = nil) throws(IndexError) -> [IndexHit] {
        let q = try Self.canonicalQuery(query)
        guard k > 0 else { return [] }
        var scores: [Int64: Float] = [:]
        for t in q {
            guard let list = postings[t.token] else { continue }
            for (doc, w) in zip(list.docs, list.weights) where filter?.allows(doc) ?? true { scores[doc, default: 0] += t.weight * w }
        }
        var top = TopK(k: k)
        for (doc, s) in scores { top.offer(IndexHit(id: doc, score: s)) }
        return top.sorted()
    }

    /// A document's weight for a token, if it has one.
    public func weight(document: Int64, token: Int32) -> Float? {
        guard let list = postings[token], let i = list.index(of: document) else { return nil }
        return list.weights[i]
    }
}

extension SparseIndex.PostingList {
    /// Position of `doc`, if present (binary search).
    package func index(of doc: Int64) -> Int? {
        let i = insertionPoint(doc)
        return i < docs.count && docs[i] == doc ? i : nil
    }

    /// First position whose doc is ≥ `doc`.
    func insertionPoint(_ doc: Int64) -> Int {
        var a = 0, b = docs.count
        while a < b {
            let mid = (a + b) / 2
            if docs[mid] < doc { a = mid + 1 } else { b = mid }
        }
        return a
    }

    /// Inserts (doc, weight); appending is the common case (new documents get larger ids).
    mutating func insert(_ doc: Int64, weight: Float) {
        if let last = docs.last, last >= doc {
            let i = insertionPoint(doc)
            docs.insert(doc, at: i)
            weights.insert(weight, at: i)
        } else {
            docs.append(doc)
            weights.append(weight)
        }
        maxWeight = Swift.max(maxWeight, weight)
        let block = doc >> SparseIndex.blockShift
        if blocks.last.map({ $0 < block }) ?? true {
            blocks.append(block)
            blockMaxima.append(weight)
        } else if let b = blockPosition(block) {
            blockMaxima[b] = Swift.max(blockMaxima[b], weight)
        } else {
            let b = blocks.firstIndex { $0 > block } ?? blocks.count
            blocks.insert(block, at: b)
            blockMaxima.insert(weight, at: b)
        }
    }

    mutating func remove(_ doc: Int64) {
        guard let i = index(of: doc) else { return }
        docs.remove(at: i)
        let w = weights.remove(at: i)
        if w == maxWeight { maxWeight = weights.max() ?? 0 }
        // Recompute the block's maximum from its remaining postings (or drop the block).
        let block = doc >> SparseIndex.blockShift
        guard let b = blockPosition(block) else { return }
        var a = insertionPoint(block << SparseIndex.blockShift)
        var m: Float = 0
        while a < docs.count && docs[a] >> SparseIndex.blockShift == block { m = Swift.max(m, weights[a]); a += 1 }
        if m > 0 { blockMaxima[b] = m } else { blocks.remove(at: b); blockMaxima.remove(at: b) }
    }

    /// Position of `block` in `blocks`, if present (binary search).
    func blockPosition(_ block: Int64) -> Int? {
        var a = 0, b = blocks.count
        while a < b {
            let mid = (a + b) / 2
            if blocks[mid] < block { a = mid + 1 } else { b = mid }
        }
        return a < blocks.count && blocks[a] == block ? a : nil
    }

    /// Derives the block maxima from docs and weights (after decoding a stored list).
    mutating func rebuildBlocks() {
        blocks = []
        blockMaxima = []
        for (doc, w) in zip(docs, weights) {
            let block = doc >> SparseIndex.blockShift
            if blocks.last == block { blockMaxima[blockMaxima.count - 1] = Swift.max(blockMaxima[blockMaxima.count - 1], w) }
            else { blocks.append(block); blockMaxima.append(w) }
        }
    }
}
