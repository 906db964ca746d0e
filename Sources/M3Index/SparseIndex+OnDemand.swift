import Foundation

// Posting lists read on demand. A query needs the lists of its own few tokens, so an index
// opened for searching need not decode all of them (~200k lists, 6M postings at 100k
// chunks: most of an open's time). The caller reads a token's stored record from its file
// when a query first needs it; the decoded list is kept for the next queries.
//
// The cache belongs to the state of one commit: lists read later must come from that same
// commit (the caller says so with `cacheable`). A writer never changes an on-demand index:
// it loads every list first, so the states it publishes hold all of them.

extension SparseIndex {
    /// Decoded posting lists of one commit, shared by the copies of an on-demand index and
    /// filled by the searches that run on them (locked: they run concurrently).
    package final class PostingCache: @unchecked Sendable {
        private let lock = NSLock()
        /// Token → its list, or nil when the file has none (so absent tokens are not re-read).
        private var lists: [Int32: PostingList?] = [:]

        init() {}

        func lookup(_ token: Int32) -> PostingList?? { lock.withLock { lists[token] } }

        func keep(_ token: Int32, _ list: PostingList?) { lock.withLock { lists[token] = list } }

        /// Lists held (for tests and memory reports).
        package var count: Int { lock.withLock { lists.count } }
    }

    /// An index whose posting lists are read when a query needs them (`withLists(for:…)`).
    package static func onDemand() -> SparseIndex {
        var index = SparseIndex()
        index.documentTokens = nil
        index.onDemand = PostingCache()
        return index
    }

    /// An index holding the posting lists of `tokens` (all of them, for the exact top k of a
    /// query with those tokens): `self` when it holds every list, else the lists from the
    /// cache or, for tokens not seen yet, decoded from `read(token)` (the stored record, nil
    /// when the token has none).
    ///
    /// `cacheable` false: the records read may belong to another commit than this index (a
    /// file another process wrote since it was opened); they are then not kept, and only the
    /// documents `keeping` allows stay in them (those the state knows), with their bounds
    /// recomputed. Throws `.corrupt` for a malformed record.
    package func withLists(for tokens: [Int32], cacheable: Bool = true, keeping: ((Int64) -> Bool)? = nil,
                           read: ([Int32]) throws -> [Int32: [UInt8]]) throws -> SparseIndex {
        guard let cache = onDemand else { return self }
        var view = SparseIndex()
        view.documentTokens = nil
        var missing: [Int32] = []
        for token in Set(tokens) {
            if cacheable, let known = cache.lookup(token) {
                if let known { view.postings[token] = known }
            } else {
                missing.append(token)
            }
        }
        missing.sort()
        let records = try read(missing)
        for token in missing {
            var list = try records[token].map { bytes throws(IndexError) in try Self.decodePosting(bytes, token: token) }
            if let keeping, var l = list {
                let kept = l.docs.indices.filter { keeping(l.docs[$0]) }
                if kept.count != l.docs.count {
                    l.docs = kept.map { l.docs[$0] }
                    l.weights = kept.map { l.weights[$0] }
                    l.maxWeight = l.weights.max() ?? 0
                    l.rebuildBlocks()
                }
                list = l.docs.isEmpty ? nil : l
            }
            if cacheable { cache.keep(token, list) }
            if let list { view.postings[token] = list }
        }
        return view
    }
}
