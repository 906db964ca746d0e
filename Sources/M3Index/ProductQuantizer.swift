import CM3Kernels
import Dispatch

/// Product quantisation (Jégou, Douze & Schmid 2011): a vector is cut into `subspaces`
/// equal slices and each slice is replaced by the index of its nearest of 256 centroids
/// (one byte), so a 1024-d float vector with 64 subspaces becomes 64 bytes.
///
/// The centroids are learnt by k-means on a sample of the vectors to compress, per subspace.
/// A query is never quantised: `lookupTable` computes every query-row · centroid product once,
/// after which a stored row's dot product with each query row is `subspaces` table reads
/// (asymmetric distance), scored by `Similarity.maxSim(table:…)`.
///
///     let pq = ProductQuantizer.train(rows: sample, dimension: 1024, subspaces: 64)
///     var codes = [UInt8](repeating: 0, count: 64)
///     pq.encode(row, into: &codes)
public struct ProductQuantizer: Sendable, Equatable {
    public static let centroidCount = 256
    public let dimension: Int
    public let subspaces: Int
    /// subspaces × 256 × (dimension / subspaces) floats: centroid c of subspace s at (s·256 + c)·ds.
    public let centroids: [Float]
    /// The centroids rounded to bfloat16, for `Similarity.maxSim(queryBF16:codebook:codes:)`.
    package let centroidsBF16: [UInt16]
    /// Per subspace the centroids transposed (ds × 256) and their squared norms, for encoding.
    let transposed: [Float]
    let norms: [Float]

    public var subspaceDimension: Int { dimension / subspaces }

    /// Whether MaxSim goes through `lookupTable` (8 or more values per code) or decodes rows
    /// (`Similarity.maxSim(queryBF16:codebook:codes:)`, 2 or 4 values per code). With short
    /// subspaces the table has as many rows as a float16 MaxSim has multiply-adds, read at
    /// random (8 MB for pq4 at 1024-d and 32 query rows), and took 2–6× float16's time; the
    /// decoded rows, in bfloat16, take less than float16's.
    public var scoresThroughTable: Bool { subspaceDimension >= 8 }

    public init(dimension: Int, subspaces: Int, centroids: [Float]) throws(IndexError) {
        guard subspaces > 0, dimension > 0, dimension % subspaces == 0 else {
            throw .invalidParameter(name: "subspaces", value: subspaces, allowed: "a divisor of the dimension \(dimension)")
        }
        guard centroids.count == dimension * Self.centroidCount else {
            throw .corrupt(what: "product quantiser", detail: "\(centroids.count) centroid values, expected \(dimension * Self.centroidCount)")
        }
        if let bad = centroids.firstIndex(where: { !$0.isFinite }) { throw .nonFiniteValue(position: bad) }
        self.dimension = dimension
        self.subspaces = subspaces
        self.centroids = centroids
        let ds = dimension / subspaces, k = Self.centroidCount
        var t = [Float](repeating: 0, count: centroids.count), n = [Float](repeating: 0, count: subspaces * k)
        for s in 0..<subspaces {
            for c in 0..<k {
                var sq: Float = 0
                for x in 0..<ds {
                    let v = centroids[(s * k + c) * ds + x]
                    t[s * ds * k + x * k + c] = v
                    sq += v * v
                }
                n[s * k + c] = sq
            }
        }
        transposed = t
        norms = n
        centroidsBF16 = Similarity.bfloat16(centroids)
    }

    public static func == (a: ProductQuantizer, b: ProductQuantizer) -> Bool {
        a.dimension == b.dimension && a.subspaces == b.subspaces && a.centroids == b.centroids
    }

    /// Learns the centroids by k-means (`iterations` Lloyd steps per subspace, subspaces in
    /// parallel) on `rows` (row-major, `dimension` values each), seeded by k-means++ (each
    /// next initial centroid drawn with probability ∝ squared distance to the nearest chosen
    /// one, from a generator seeded with `seed`, so training is reproducible). With fewer
    /// than 256 distinct rows the surplus centroids repeat chosen ones and are never used (ties
    /// go to the lower index). An emptied cluster takes a random row again.
    public static func train(rows: [Float], dimension: Int, subspaces: Int, iterations: Int = 10,
                             seed: UInt64 = 0x5051_5F4D_3353) throws(IndexError) -> ProductQuantizer {
        guard subspaces > 0, dimension > 0, dimension % subspaces == 0 else {
            throw .invalidParameter(name: "subspaces", value: subspaces, allowed: "a divisor of the dimension \(dimension)")
        }
        let n = rows.count / dimension
        guard n > 0, rows.count == n * dimension else {
            throw .invalidParameter(name: "training rows", value: rows.count, allowed: "a positive multiple of \(dimension) values")
        }
        let k = centroidCount, ds = dimension / subspaces
        var centroids = [Float](repeating: 0, count: dimension * k)
        rows.withUnsafeBufferPointer { x in
            centroids.withUnsafeMutableBufferPointer { out in
                let outBase = out.baseAddress!
                concurrently(min(subspaces, 2)) { worker in
                    for s in stride(from: worker, to: subspaces, by: 2) {
                        var local = SplitMix64(seed: seed &+ UInt64(s) &* 0x9E37_79B9_7F4A_7C15)
                        func value(_ i: Int, _ t: Int) -> Float { x[i * dimension + s * ds + t] }
                        // k-means++ seeding.
                        var cent = [Float](repeating: 0, count: k * ds)
                        var nearest = [Float](repeating: .infinity, count: n)
                        var pick = Int(local.next() % UInt64(n))
                        for c in 0..<k {
                            for t in 0..<ds { cent[c * ds + t] = value(pick, t) }
                            var total: Double = 0
                            for i in 0..<n {
                                var dist: Float = 0
                                for t in 0..<ds { let e = value(i, t) - cent[c * ds + t]; dist += e * e }
                                nearest[i] = min(nearest[i], dist)
                                total += Double(nearest[i])
                            }
                            guard total > 0 else {
                                // Every row coincides with a chosen centroid: repeat the chosen ones.
                                for r in (c + 1)..<k { for t in 0..<ds { cent[r * ds + t] = cent[(r % (c + 1)) * ds + t] } }
                                break
                            }
                            var target = Double(local.next() >> 11) * 0x1p-53 * total
                            pick = n - 1
                            for i in 0..<n {
                                target -= Double(nearest[i])
                                if target < 0 { pick = i; break }
                            }
                        }
                        var assign = [Int](repeating: 0, count: n)
                        for _ in 0..<iterations {
                            let (ct, cn) = transpose(cent, k: k, ds: ds)
                            for i in 0..<n {
                                assign[i] = Int(m3cx_nearest_centroid(x.baseAddress! + i * dimension + s * ds, ds, ct, cn, k))
                            }
                            var sums = [Float](repeating: 0, count: k * ds), counts = [Int](repeating: 0, count: k)
                            for i in 0..<n {
                                let c = assign[i]
                                counts[c] += 1
                                for t in 0..<ds { sums[c * ds + t] += x[i * dimension + s * ds + t] }
                            }
                            for c in 0..<k {
                                if counts[c] > 0 {
                                    for t in 0..<ds { cent[c * ds + t] = sums[c * ds + t] / Float(counts[c]) }
                                } else if n > k {
                                    let r = Int(local.next() % UInt64(n))
                                    for t in 0..<ds { cent[c * ds + t] = x[r * dimension + s * ds + t] }
                                }
                            }
                        }
                        for i in 0..<(k * ds) { outBase[s * k * ds + i] = cent[i] }
                    }
                }
            }
        }
        return try ProductQuantizer(dimension: dimension, subspaces: subspaces, centroids: centroids)
    }

    static func transpose(_ cent: [Float], k: Int, ds: Int) -> ([Float], [Float]) {
        var t = [Float](repeating: 0, count: k * ds), n = [Float](repeating: 0, count: k)
        for c in 0..<k {
            for x in 0..<ds {
                t[x * k + c] = cent[c * ds + x]
                n[c] += cent[c * ds + x] * cent[c * ds + x]
            }
        }
        return (t, n)
    }

    /// Codes of one row (`dimension` floats) into `codes` (`subspaces` bytes).
    public func encode(_ row: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>) {
        let ds = subspaceDimension, k = Self.centroidCount
        transposed.withUnsafeBufferPointer { t in
            norms.withUnsafeBufferPointer { n in
                let tBase: UnsafePointer<Float> = t.baseAddress!, nBase: UnsafePointer<Float> = n.baseAddress!
                for s in 0..<subspaces {
                    let c: UInt32 = m3cx_nearest_centroid(row + s * ds, ds, tBase + s * ds * k, nBase + s * k, k)
                    codes[s] = UInt8(truncatingIfNeeded: c)
                }
            }
        }
    }

    /// The vector a row of codes stands for (centroids laid end to end).
    public func decode(_ codes: UnsafeRawBufferPointer) -> [Float] {
        let ds = subspaceDimension, k = Self.centroidCount
        var out = [Float](repeating: 0, count: dimension)
        for s in 0..<subspaces {
            let c = Int(codes[s])
            for t in 0..<ds { out[s * ds + t] = centroids[(s * k + c) * ds + t] }
        }
        return out
    }

    /// Every query row · every centroid, laid out for `Similarity.maxSim(table:…)`.
    public func lookupTable(query q: UnsafeBufferPointer<Float>) -> [Float] {
        let nq = q.count / dimension
        let count = m3cx_pq_table_count(nq, subspaces)
        return [Float](unsafeUninitializedCapacity: count) { buf, n in
            centroids.withUnsafeBufferPointer { c in
                m3cx_pq_table(q.baseAddress, nq, dimension, c.baseAddress, subspaces, buf.baseAddress)
            }
            n = count
        }
    }

    // MARK: - Persistence

    static let magic: [UInt8] = Array("M3PQ".utf8)

    /// "M3PQ", version 1, dimension, subspaces, centroid count (uint32 LE each), then the
    /// centroids as float32 LE.
    public func serialized() -> [UInt8] {
        var w = ByteWriter(capacity: 20 + centroids.count * 4)
        w.raw(Self.magic)
        w.u32(1)
        w.u32(UInt32(dimension))
        w.u32(UInt32(subspaces))
        w.u32(UInt32(Self.centroidCount))
        for v in centroids { w.f32(v) }
        return w.bytes
    }

    public init(serialized bytes: [UInt8]) throws(IndexError) {
        var r = ByteReader(bytes, what: "product quantiser")
        try r.magic(Self.magic, "magic")
        let version = try r.u32("version")
        guard version == 1 else { throw .corrupt(what: "product quantiser", detail: "unknown version \(version)") }
        let dimension = Int(try r.u32("dimension")), subspaces = Int(try r.u32("subspaces")), k = Int(try r.u32("centroid count"))
        guard k == Self.centroidCount, dimension > 0, dimension <= 1 << 16 else {
            throw .corrupt(what: "product quantiser", detail: "dimension \(dimension), \(k) centroids")
        }
        var values = [Float]()
        values.reserveCapacity(dimension * k)
        for _ in 0..<(dimension * k) { values.append(try r.f32("centroids")) }
        try r.expectEnd()
        try self.init(dimension: dimension, subspaces: subspaces, centroids: values)
    }
}

/// Runs body(0..<n) on n threads and waits.
private func concurrently(_ n: Int, _ body: (Int) -> Void) {
    guard n > 1 else { if n == 1 { body(0) }; return }
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let run = escaping
        DispatchQueue.concurrentPerform(iterations: n) { run($0) }
    }
}
