import CM3Kernels

// The graph image: the in-memory graph as a few large blobs, which an index opens with
// bulk copies instead of decoding one node record and one stored vector per chunk (at
// 100k chunks the row-by-row load read 100k chunk rows and parsed 100k records).
//
// It is derived data: the node records and the chunks' vectors stay the source of truth.
// The writer stores an image when it checkpoints, stamped with the commit and the graph
// header it mirrors; an open uses it only when the stamp matches the file (any later write
// makes it stale) and the graph encoding is the one wanted, else it loads row by row.
//
// Manifest, version 1 (little-endian):
//   "M3GI"  u16 version  u8 encoding (0 float32, 1 int8)  u8 reserved (0)
//   u64 commit count  u32 slots per segment  u32 segment count
//   u32 header length, then the HNSW header (`metaBytes()`) at that commit
//
// Segment k holds slots k·S ..< min((k+1)·S, slots), n of them, as two parts:
//   links: n × u8 state, n × u8 level, n × i64 id, n × (2M + 1) u32 layer-0 list
//          ([count, links…], unused entries 0), then for each slot of level L > 0 in
//          order, L × (M + 1) u32 upper-layer lists
//   rows:  n × the encoding's row (float32: d × f32; int8: the graph's int8 row, codes
//          then its norm terms, `m3ix_q8_row_bytes(d)` bytes)
//
// Loading checks sizes before copying, then everything the record loader checks of the
// structure (`Loader.finish`: counts against the header, link ranges and invariants), so a
// hostile image cannot make a search read out of bounds. The rows are taken as stored
// (the store's checksum guards against damage; a forged row only changes scores).

extension HNSWIndex {
    static let imageMagic: [UInt8] = Array("M3GI".utf8)
    static let imageVersion: UInt16 = 1
    /// Slots per segment: 8,192 float32 rows of 1024-d are 32 MB, int8 rows 8.5 MB.
    public static let imageSegmentSlots = 8_192

    /// Bytes of one graph row under `encoding` (the size of an image's rows per slot).
    public static func rowBytes(encoding: VectorEncoding, dimension: Int) -> Int {
        VectorRows(encoding: encoding, dimension: dimension).rowBytes
    }

    /// What an image's manifest says.
    public struct ImageManifest: Equatable, Sendable {
        public var encoding: VectorEncoding
        public var commit: Int64
        public var segmentSlots: Int
        public var segments: Int
        /// The HNSW header (`metaBytes()`) of the graph imaged.
        public var header: [UInt8]

        public init(encoding: VectorEncoding, commit: Int64, segmentSlots: Int, segments: Int, header: [UInt8]) {
            self.encoding = encoding
            self.commit = commit
            self.segmentSlots = segmentSlots
            self.segments = segments
            self.header = header
        }

        public var bytes: [UInt8] {
            var w = ByteWriter(capacity: 32 + header.count)
            w.raw(HNSWIndex.imageMagic)
            w.u16(HNSWIndex.imageVersion)
            w.u8(encoding == .int8 ? 1 : 0)
            w.u8(0)
            w.u64(UInt64(bitPattern: commit))
            w.u32(UInt32(segmentSlots))
            w.u32(UInt32(segments))
            w.u32(UInt32(header.count))
            w.raw(header)
            return w.bytes
        }

        /// Throws `.corrupt(what: "graph image manifest", …)`.
        public init(bytes: [UInt8]) throws(IndexError) {
            var r = ByteReader(bytes, what: "graph image manifest")
            try r.magic(HNSWIndex.imageMagic, "magic")
            let version = try r.u16("version")
            guard version == HNSWIndex.imageVersion else { throw r.fail("version \(version); this build reads \(HNSWIndex.imageVersion)") }
            let code = try r.u8("encoding")
            guard code <= 1 else { throw r.fail("unknown encoding \(code)") }
            _ = try r.u8("reserved")
            encoding = code == 1 ? .int8 : .float32
            commit = Int64(bitPattern: try r.u64("commit"))
            segmentSlots = Int(try r.u32("slots per segment"))
            segments = Int(try r.u32("segment count"))
            let n = Int(try r.u32("header length"))
            guard n <= r.remaining else { throw r.fail("header length \(n) over the \(r.remaining) bytes left") }
            header = try r.bytes(n, "header")
            try r.expectEnd()
            guard segmentSlots >= 1 else { throw r.fail("segments of \(segmentSlots) slots") }
        }
    }

    /// The manifest of an image of this graph at `commit`.
    public func imageManifest(commit: Int64, segmentSlots: Int = HNSWIndex.imageSegmentSlots) -> ImageManifest {
        ImageManifest(encoding: encoding, commit: commit, segmentSlots: segmentSlots,
                      segments: (slotCount + segmentSlots - 1) / segmentSlots, header: metaBytes())
    }

    /// Segment `k` of the image (layout at the top of this file): its links part and its
    /// rows part. Precondition: k < the manifest's segment count.
    public func imageSegment(_ k: Int, segmentSlots: Int = HNSWIndex.imageSegmentSlots) -> (links: [UInt8], rows: [UInt8]) {
        let first = k * segmentSlots
        let n = Swift.max(0, Swift.min(segmentSlots, slotCount - first))
        var upper = 0
        for s in first ..< first + n { upper += Int(levels[s]) * (maxM + 1) }
        var w = ByteWriter(capacity: n * (10 + (maxM0 + 1) * 4) + upper * 4)
        for s in first ..< first + n { w.u8(states[s]) }
        for s in first ..< first + n { w.u8(UInt8(levels[s])) }
        for s in first ..< first + n { w.u64(UInt64(bitPattern: ids[s])) }
        for s in first ..< first + n {
            let p = links0 + s * (maxM0 + 1)
            let count = Int(p[0])
            for i in 0 ... maxM0 { w.u32(i <= count ? p[i] : 0) }
        }
        for s in first ..< first + n where levels[s] > 0 {
            let p = upperLinks[s]!
            for i in 0 ..< Int(levels[s]) * (maxM + 1) { w.u32(p[i]) }
        }
        let rowBytes = codec.rowBytes
        let rowPart = [UInt8](unsafeUninitializedCapacity: n * rowBytes) { buffer, count in
            if n > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: rows + first * rowBytes, byteCount: n * rowBytes) }
            count = n * rowBytes
        }
        return (w.bytes, rowPart)
    }
}

extension HNSWIndex.Loader {
    /// Adds segment `k` of an image (segments in order, from 0): its slots' states, levels,
    /// ids and lists from `links`, their rows from `rows`, copied in bulk. Use `finish()`
    /// after the last segment; it checks the structure as for records.
    ///
    /// Throws `IndexError.corrupt(what: "graph image segment k", …)` for parts of the wrong
    /// size, an unknown state, a level over the header's, a live id twice, or segments out of
    /// order (and what `readRows` throws).
    public mutating func addImageSegment(_ k: Int, segmentSlots: Int, links: UnsafeRawBufferPointer,
                                         rows: UnsafeRawBufferPointer) throws {
        try addImageSegment(k, segmentSlots: segmentSlots, links: links) { (destination) throws(IndexError) in
            guard rows.count == destination.count else {
                throw .corrupt(what: "graph image segment \(k)", detail: "rows part has \(rows.count) bytes, not \(destination.count)")
            }
            if rows.count > 0 { destination.baseAddress!.copyMemory(from: rows.baseAddress!, byteCount: rows.count) }
        }
    }

    /// `addImageSegment`, with the rows part read by `readRows` straight into the graph's
    /// rows (`destination`: exactly the segment's row bytes); it throws if the part does
    /// not fill it exactly or fails its check.
    public mutating func addImageSegment<E: Error>(_ k: Int, segmentSlots: Int, links: UnsafeRawBufferPointer,
                                                   readRows: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws {
        func fail(_ detail: String) -> IndexError { .corrupt(what: "graph image segment \(k)", detail: detail) }
        let first = k * segmentSlots
        guard segmentSlots >= 1, first == recordsAdded, first < expectedSlots else {
            throw fail("starts at slot \(first); \(recordsAdded) of \(expectedSlots) slots loaded")
        }
        let n = Swift.min(segmentSlots, expectedSlots - first)
        let index = self.index
        let stride0 = index.maxM0 + 1, upperStride = index.maxM + 1, rowBytes = index.codec.rowBytes
        let fixed = n * (2 + 8 + stride0 * 4)
        guard links.count >= fixed else { throw fail("links part has \(links.count) bytes, under the \(fixed) of \(n) slots") }
        // Levels first: they size the upper lists, which must fill the rest exactly.
        var upper = 0
        for i in 0 ..< n {
            let state = links[i], level = Int(links[n + i])
            guard state <= 2 else { throw fail("slot \(first + i) has unknown state \(state)") }
            guard level <= Int(expectedMaxLevel) || (state == 2 && level == 0) else {
                throw fail("slot \(first + i) has level \(level), above the header's max level \(expectedMaxLevel)")
            }
            upper += level * upperStride
        }
        guard links.count == fixed + upper * 4 else {
            throw fail("links part has \(links.count) bytes; its levels need \(fixed + upper * 4)")
        }
        index.appendImageSlots(n)
        let idsAt = 2 * n, links0At = 10 * n
        // The stored layer-0 lists have the graph's own layout ([count, links…] per slot):
        // one copy (little-endian hosts; the structure check after the last segment vets them).
        let list0 = index.links0 + first * stride0
        #if _endian(little)
        UnsafeMutableRawPointer(list0).copyMemory(from: links.baseAddress! + links0At, byteCount: n * stride0 * 4)
        #else
        for j in 0 ..< n * stride0 {
            list0[j] = UInt32(littleEndian: links.loadUnaligned(fromByteOffset: links0At + j * 4, as: UInt32.self))
        }
        #endif
        var upperAt = fixed
        for i in 0 ..< n {
            let s = first + i
            let state = HNSWIndex.SlotState(rawValue: links[i])!
            let level = Int(links[n + i])
            let id = Int64(littleEndian: links.loadUnaligned(fromByteOffset: idsAt + 8 * i, as: Int64.self))
            index.states[s] = state.rawValue
            index.levels[s] = Int32(level)
            index.ids[s] = state == .free ? 0 : id
            if level > 0 {
                let count = level * upperStride
                let p = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
                for j in 0 ..< count {
                    p[j] = UInt32(littleEndian: links.loadUnaligned(fromByteOffset: upperAt + j * 4, as: UInt32.self))
                }
                upperAt += count * 4
                index.upperLinks[s] = p
            }
            switch state {
            case .live:
                guard index.slotOfID.updateValue(UInt32(s), forKey: id) == nil else {
                    throw fail("id \(id) is live in two slots")
                }
                index.liveCount += 1
            case .deleted: index.tombstones += 1
            case .free: index.freeSlots.append(UInt32(s))
            }
        }
        try readRows(UnsafeMutableRawBufferPointer(start: index.rows.advanced(by: first * rowBytes), count: n * rowBytes))
        recordsAdded += n
    }
}

extension HNSWIndex {
    /// Appends `n` slots as `appendSlot` does (free, level 0, no links), except that their
    /// rows are left for the image's rows to fill: zeroing them first was a pass over every
    /// row of the graph.
    func appendImageSlots(_ n: Int) {
        reserve(slotCount + n)
        let first = slotCount
        (links0 + first * (maxM0 + 1)).initialize(repeating: 0, count: n * (maxM0 + 1))
        (states + first).initialize(repeating: SlotState.free.rawValue, count: n)
        (parent0 + first).initialize(repeating: Self.noParent, count: n)
        (childCount + first).initialize(repeating: 0, count: n)
        (twinFlags + first).initialize(repeating: 0, count: n)
        (dirtyFlags + first).initialize(repeating: 0, count: n)
        upperLinks.append(contentsOf: repeatElement(nil, count: n))
        levels.append(contentsOf: repeatElement(0, count: n))
        ids.append(contentsOf: repeatElement(0, count: n))
        slotCount += n
    }
}

extension HNSWIndex {
    /// The first difference between this graph and `other`, or nil: the header, a slot's
    /// record (state, id, level, links), or a vector further from the other's than the two
    /// encodings explain (cosine under 0.999). `check` compares an image-opened graph with a
    /// row-by-row load of the same file; the two may hold different encodings.
    public func differenceFrom(_ other: HNSWIndex) -> String? {
        guard metaBytes() == other.metaBytes(), dim == other.dim else { return "the HNSW headers differ" }
        for s in 0 ..< slotCount {
            guard nodeRecord(slot: s) == other.nodeRecord(slot: s) else { return "slot \(s): state, id, level or links differ" }
            guard states[s] != SlotState.free.rawValue else { continue }
            let a = vector(slot: s), b = other.vector(slot: s)
            let cosine = m3ix_dot_f32(a, b, dim)
            guard cosine >= 0.999 else { return "slot \(s): vector differs (cosine \(cosine))" }
        }
        return nil
    }
}
