// The stored form of a sparse index: one record per token id (one SQLite row), written
// incrementally through `dirtyTokens`, and the loader that rebuilds the index from them.
//
// Posting-list bytes, version 1 (little-endian):
//   "M3PL"  u8 version  u8 flags (0)
//   i32 token  u32 count (≥ 1)  f32 max weight
//   count doc ids: the first as a zigzag varint, then each gap to the previous (≥ 1) as a varint
//   count × f32 weights (finite, > 0; their maximum equals the stored max weight)

extension SparseIndex {
    static let postingMagic: [UInt8] = Array("M3PL".utf8)
    static let postingVersion: UInt8 = 1

    /// Tokens whose posting lists changed since the last `clearDirty()`, ascending. For each,
    /// write `postingBytes(token:)`, or delete the row when it is nil (the list emptied).
    public var dirtyTokens: [Int32] { dirty.sorted() }

    /// Forgets the dirty set, after the caller has persisted it.
    public mutating func clearDirty() { dirty.removeAll(keepingCapacity: true) }

    /// The record of one token's posting list, or nil if no document has the token.
    public func postingBytes(token: Int32) -> [UInt8]? {
        guard let list = postings[token] else { return nil }
        var w = ByteWriter(capacity: 18 + list.docs.count * 6)
        w.raw(Self.postingMagic)
        w.u8(Self.postingVersion)
        w.u8(0)
        w.i32(token)
        w.u32(UInt32(list.docs.count))
        w.f32(list.maxWeight)
        var previous: Int64 = 0
        for (i, doc) in list.docs.enumerated() {
            if i == 0 {
                w.varint(UInt64(bitPattern: (doc << 1) ^ (doc >> 63)))  // zigzag: small |doc| → few bytes
            } else {
                w.varint(UInt64(bitPattern: doc &- previous))  // > 0: ids ascend
            }
            previous = doc
        }
        for x in list.weights { w.f32(x) }
        return w.bytes
    }

    /// Decodes and checks one posting-list record. Throws `.corrupt` naming the token.
    static func decodePosting(_ bytes: [UInt8], token expected: Int32) throws(IndexError) -> PostingList {
        var r = ByteReader(bytes, what: "posting list for token \(expected)")
        try r.magic(postingMagic, "magic")
        let version = try r.u8("version")
        guard version == postingVersion else { throw r.fail("format version \(version); this build reads version \(postingVersion)") }
        let flags = try r.u8("flags")
        guard flags == 0 else { throw r.fail("unknown flags \(flags)") }
        let token = try r.i32("token")
        guard token == expected else { throw r.fail("record holds token \(token)") }
        let count = Int(try r.u32("count"))
        // Each entry takes ≥ 1 varint byte + 4 weight bytes: bounds count before allocating.
        guard count >= 1, count <= (r.remaining - 4) / 5 else {
            throw r.fail("count \(count) impossible for \(bytes.count) bytes (empty lists are not stored)")
        }
        let maxWeight = try r.f32("max weight")
        var list = PostingList()
        list.docs.reserveCapacity(count)
        list.weights.reserveCapacity(count)
        var previous: Int64 = 0
        for i in 0..<count {
            let raw = try r.varint("doc id \(i)")
            if i == 0 {
                previous = Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)
            } else {
                // Int64.max − previous, exact in UInt64 even when previous < 0.
                let room = UInt64(bitPattern: Int64.max) &- UInt64(bitPattern: previous)
                guard raw >= 1, raw <= room else {
                    throw r.fail("doc id \(i): gap \(raw) after \(previous) breaks ascending order")
                }
                previous = previous &+ Int64(bitPattern: raw)
            }
            list.docs.append(previous)
        }
        var maxSeen: Float = 0
        for i in 0..<count {
            let w = try r.f32("weight \(i)")
            guard w.isFinite && w > 0 else { throw r.fail("weight \(i) is \(w) (must be finite and > 0)") }
            maxSeen = Swift.max(maxSeen, w)
            list.weights.append(w)
        }
        try r.expectEnd()
        guard maxSeen == maxWeight else { throw r.fail("stored max weight \(maxWeight) but the largest weight is \(maxSeen)") }
        list.maxWeight = maxWeight
        list.rebuildBlocks()
        return list
    }

    /// Rebuilds a sparse index from its posting-list records (any order), validating each;
    /// the per-document token lists are rebuilt from the postings.
    ///
    ///     var loader = SparseIndex.Loader()
    ///     for row in rows { try loader.add(token: row.token, bytes: row.bytes) }
    ///     let sparse = loader.finish()
    public struct Loader {
        private var index = SparseIndex()

        public init() {}

        /// A loader expecting about `tokens` posting lists (room reserved for them).
        public init(expectedTokens tokens: Int) {
            index.postings.reserveCapacity(max(0, min(tokens, 1 << 24)))
        }

        /// Adds the record stored under `token`. Throws `.corrupt` for malformed bytes, a
        /// token other than the row's, or a token seen before.
        public mutating func add(token: Int32, bytes: [UInt8]) throws(IndexError) {
            guard index.postings[token] == nil else {
                throw .corrupt(what: "posting list for token \(token)", detail: "token appears twice")
            }
            index.postings[token] = try SparseIndex.decodePosting(bytes, token: token)
        }

        /// The loaded index (nothing dirty). Each document's token list is derived on the
        /// first change, not here (`SparseIndex.documentTokens`).
        public consuming func finish() -> SparseIndex {
            index.documentTokens = nil
            index.dirty = []
            return index
        }
    }
}
