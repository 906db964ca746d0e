// The packed-weights cache: the int8 / bf16 packing of every linear layer, written once and
// then used in place from a memory map, so a reduced-precision start maps a file instead of
// quantizing 300 M weights again (~330 ms on 2 cores for the full-size BGE-M3).
//
// Like every cache file, it is untrusted input: the header, the directory and every size are
// validated with checked arithmetic, each section carries an XXH3-64, and any mismatch means
// "pack afresh and rewrite", never a crash or other numbers.
//
// Checksums at read: hashing the 406 MB of the full-size model in int8 took 77–200 ms here
// (faulting in the mapping included) of a start that otherwise spends ~2 ms on packing, so
// the sections are hashed only when the file's stat stamp is not the one `file-digests` holds
// for it (the same trust the weights' digests get, ModelCache.swift). The stamp is recorded
// only for a file whose mtime is older than `settledAge`: a later in-place write gets a newer
// mtime, so it cannot keep the recorded stamp even on a file system with coarse timestamps
// (the writer back-dates its files' mtime for that reason). The header and directory are
// checked at every read.
import CChecksums
import CM3Kernels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hands each `Linear` its packed matrix at load: the cached packing when the cache file has
/// it for exactly this name, precision and shape, else W packed now. After the last layer,
/// `finish()` writes the cache file if anything had to be packed. Layers are built on several
/// threads at once.
final class WeightPacker: @unchecked Sendable {  // `matrices` and `packed` guarded by `lock`
    private let cached: PackedWeightsFile.Contents?
    private let directory: String?
    private let precision: Precision
    private let key: Digest128
    private let digests: DigestCache
    private let lock = NSLock()
    private var matrices: [(name: String, matrix: PackedMatrix)] = []
    private var packed = 0

    /// `plan` names what gets packed in which precision beyond `precision` itself (int8's
    /// feed-forward up-projection), so a CPU that packs differently uses another file.
    init(cache: ModelCache, identity: String, precision: Precision, plan: String, digests: DigestCache) {
        self.precision = precision
        self.digests = digests
        let key = PackedWeightsFile.key(identity: identity, precision: precision, plan: plan)
        let directory = precision == .float32 ? nil : cache.directory
        self.key = key
        self.directory = directory
        cached = directory.flatMap {
            PackedWeightsFile.open(PackedWeightsFile.path($0, precision: precision, key: key), key: key, digests: digests)
        }
    }

    /// W (out, in) of the layer `name` packed for `arithmetic`; nil for float32.
    func matrix(_ name: String, _ w: Tensor, arithmetic: LinearArithmetic) -> PackedMatrix? {
        guard arithmetic != .float32, w.shape.count == 2 else { return nil }
        let reused = cached?.matrix(name, arithmetic: arithmetic, out: w.shape[0], in: w.shape[1])
        guard let matrix = reused ?? PackedMatrix(w, arithmetic: arithmetic) else { return nil }
        lock.withLock {
            matrices.append((name, matrix))
            if reused == nil { packed += 1 }
        }
        return matrix
    }

    /// Every packed matrix came from the cache file (and there was at least one).
    var allCached: Bool { lock.withLock { !matrices.isEmpty && packed == 0 } }

    /// Writes the cache file when a matrix had to be packed (none cached, or the file was
    /// stale or damaged). A failure to write only means packing again next time.
    func finish() {
        let (all, fresh) = lock.withLock { (matrices, packed) }
        guard fresh > 0, let directory else { return }
        PackedWeightsFile.write(directory, precision: precision, key: key,
                                matrices: all.sorted { $0.name < $1.name }, digests: digests)
    }
}

/// `packed-<precision>-<key>.bin`:
///
///     header, 64 bytes
///     [0, 16)    "m3search-packedw"  magic
///     [16, 20)   UInt32 format version (2)
///     [20, 24)   UInt32 matrix count
///     [24, 40)   key (also in the file name)
///     [40, 56)   digest (`ContentHash`) of the directory
///     [56, 64)   UInt64 file length
///     directory at 64: one 192-byte entry per matrix
///     [0, 72)    name, UTF-8, NUL-padded
///     [72, 76)   UInt32 arithmetic: 1 int8, 2 bf16, 3 two-part int8
///     [76, 80)   0
///     [80, 96)   UInt64 out, UInt64 in
///     [96, 192)  6 × (UInt64 offset, UInt64 XXH3-64) of its sections (int8: panels, scales,
///                column sums; two-part int8: those of W_hi, then of W_lo; bf16: panels);
///                unused slots 0
///     sections: each at a multiple of 4096 (the kernels need 64-byte alignment) and followed
///     by at least 64 readable bytes (the slack of the kernels' own allocations)
enum PackedWeightsFile {
    static let magic = Array("m3search-packedw".utf8)
    static let version: UInt32 = 2
    static let headerLength = 64
    static let entryLength = 192
    static let nameLength = 72
    static let maxSections = 6
    /// BGE-M3 packs 145 matrices; nothing genuine comes near this.
    static let maxMatrices = 1 << 16
    /// Each dimension of a packed matrix (BGE-M3's largest is 4096).
    static let maxDimension = 1 << 24
    static let sectionAlignment = 4096
    static let slack = 64
    /// Packed files kept (~380 MB each for the full-size model in int8); older ones go.
    static let keep = 3
    /// A stamp is recorded for a file whose mtime is at least this old (nanoseconds).
    static let settledAge: Int64 = 2_000_000_000

    /// Digest of everything the packed bytes depend on: the model (its identity covers every
    /// weight and config.json), the precisions, the packing scheme and the kernels' layout,
    /// and the host's byte order and word size.
    static func key(identity: String, precision: Precision, plan: String) -> Digest128 {
        let text = "m3search packed weights\u{0}\(identity)\u{0}\(precision)\u{0}\(plan)\u{0}scheme \(PackedMatrix.packingSchemeVersion)"
            + " i8 \(m3_i8_layout_tag()) bf16 \(m3_bf16_layout_tag()) i16 \(m3_i16_layout_tag())\u{0}\(hostTag)"
        return ContentHash.digest(Array(text.utf8))
    }

    #if _endian(little)
    static let hostTag = "little-endian \(Int.bitWidth)-bit"
    #else
    static let hostTag = "big-endian \(Int.bitWidth)-bit"
    #endif

    static func path(_ directory: String, precision: Precision, key: Digest128) -> String {
        (directory as NSString).appendingPathComponent("packed-\(precision)-\(key).bin")
    }

    static func code(_ arithmetic: LinearArithmetic) -> UInt32 {
        switch arithmetic {
        case .float32: 0
        case .int8: 1
        case .bfloat16: 2
        case .int16: 4  // 3 was two-part int8 (packing scheme 2)
        }
    }

    /// A validated file: its mapping and the sections of each matrix.
    final class Contents: @unchecked Sendable {  // immutable
        struct Entry {
            let arithmetic: LinearArithmetic
            let out: Int, inFeatures: Int
            let sections: [UnsafeRawBufferPointer]
            let checksums: [UInt64]
        }
        let file: MappedFile
        let entries: [String: Entry]

        init(file: MappedFile, entries: [String: Entry]) {
            self.file = file
            self.entries = entries
        }

        /// The cached packing of `name` when it is for exactly this arithmetic and shape.
        func matrix(_ name: String, arithmetic: LinearArithmetic, out: Int, in inner: Int) -> PackedMatrix? {
            guard let e = entries[name], e.arithmetic == arithmetic, e.out == out, e.inFeatures == inner else { return nil }
            return PackedMatrix(arithmetic: arithmetic, out: out, in: inner, sections: e.sections, owner: file)
        }
    }

    /// The mapped file when it is intact for `key`; nil otherwise (missing, torn, foreign,
    /// stale or damaged: the caller packs afresh).
    static func open(_ path: String, key: Digest128, digests: DigestCache) -> Contents? {
        guard let file = try? MappedFile(path: path) else { return nil }
        let bytes = file.bytes
        guard bytes.count >= headerLength, Array(bytes[0 ..< 16]) == magic,
              bytes.readLE(UInt32.self, at: 16) == version,
              let count32 = bytes.readLE(UInt32.self, at: 20), count32 >= 1, count32 <= maxMatrices,
              bytes.readLE(UInt64.self, at: 24) == key.low, bytes.readLE(UInt64.self, at: 32) == key.high,
              let digestLow = bytes.readLE(UInt64.self, at: 40), let digestHigh = bytes.readLE(UInt64.self, at: 48),
              bytes.readLE(UInt64.self, at: 56) == UInt64(bytes.count) else { return nil }
        let count = Int(count32)  // ≤ 2¹⁶: the products below cannot overflow
        let directoryEnd = headerLength + count * entryLength
        guard let directory = bytes.slice(headerLength, count * entryLength) else { return nil }
        let directoryDigest = Digest128(low: digestLow, high: digestHigh)
        guard ContentHash.digest(directory) == directoryDigest else { return nil }

        var entries: [String: Contents.Entry] = [:]
        for i in 0 ..< count {
            let base = headerLength + i * entryLength
            guard let entry = parseEntry(bytes, at: base, after: directoryEnd), entries[entry.name] == nil else { return nil }
            entries[entry.name] = entry.entry
        }

        let fileKey = ModelFiles.cacheKey(path)
        if let known = digests.lookup(fileKey, stamp: file.stamp), known.verified, known.digest == directoryDigest {
            return Contents(file: file, entries: entries)  // this very file was checked before
        }
        let all = entries.values.flatMap { zip($0.sections, $0.checksums) }
        guard checksums(all.map(\.0)) == all.map(\.1) else { return nil }
        if isSettled(file.stamp) {
            digests.store(fileKey, FileRecord(stamp: file.stamp, digest: directoryDigest, verified: true))
        }
        return Contents(file: file, entries: entries)
    }

    /// One directory entry, checked against the file's bounds; nil when anything is off.
    private static func parseEntry(_ bytes: UnsafeRawBufferPointer, at base: Int, after directoryEnd: Int)
        -> (name: String, entry: Contents.Entry)? {
        guard let field = bytes.slice(base, nameLength) else { return nil }
        let nameBytes = Array(field.prefix { $0 != 0 })
        guard !nameBytes.isEmpty, field.dropFirst(nameBytes.count).allSatisfy({ $0 == 0 }),
              let name = String(validating: nameBytes, as: UTF8.self),
              let code = bytes.readLE(UInt32.self, at: base + 72), bytes.readLE(UInt32.self, at: base + 76) == 0,
              let arithmetic = [LinearArithmetic.int8, .bfloat16, .int16].first(where: { self.code($0) == code }),
              let out64 = bytes.readLE(UInt64.self, at: base + 80), let in64 = bytes.readLE(UInt64.self, at: base + 88),
              out64 >= 1, out64 <= maxDimension, in64 >= 1, in64 <= maxDimension,
              let lengths = PackedMatrix.sectionLengths(arithmetic, out: Int(out64), in: Int(in64)),
              lengths.count <= maxSections else { return nil }
        var sections: [UnsafeRawBufferPointer] = [], sums: [UInt64] = []
        for s in 0 ..< maxSections {
            guard let offset64 = bytes.readLE(UInt64.self, at: base + 96 + 16 * s),
                  let sum = bytes.readLE(UInt64.self, at: base + 104 + 16 * s) else { return nil }
            if s >= lengths.count {
                guard offset64 == 0, sum == 0 else { return nil }
                continue
            }
            let (padded, overflow) = lengths[s].addingReportingOverflow(slack)
            guard !overflow, let offset = Int(exactly: offset64), offset >= directoryEnd, offset % sectionAlignment == 0,
                  bytes.slice(offset, padded) != nil, let section = bytes.slice(offset, lengths[s]) else { return nil }
            sections.append(section)
            sums.append(sum)
        }
        return (name, Contents.Entry(arithmetic: arithmetic, out: Int(out64), inFeatures: Int(in64), sections: sections, checksums: sums))
    }

    /// XXH3-64 of each buffer, spread over the cores (sections are 4 KB to 8 MB).
    static func checksums(_ buffers: [UnsafeRawBufferPointer]) -> [UInt64] {
        var sums = [UInt64](repeating: 0, count: buffers.count)
        let workers = max(1, min(buffers.count, ProcessInfo.processInfo.activeProcessorCount))
        sums.withUnsafeMutableBufferPointer { out in
            let shared = Shared((buffers, out))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let (buffers, out) = shared.value
                for i in stride(from: w, to: buffers.count, by: workers) {
                    out[i] = XXH3_64bits(buffers[i].baseAddress, buffers[i].count)
                }
            }
        }
        return sums
    }

    /// The file's mtime is older than `settledAge`: any later write would change it.
    static func isSettled(_ stamp: FileStamp) -> Bool {
        stamp.mtimeNanoseconds <= nowNanoseconds() - settledAge
    }

    static func nowNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) &* 1_000_000_000 &+ Int64(now.tv_nsec)
    }

    /// Writes the packing of `matrices` (atomically), records its stamp, and prunes old
    /// packed files. Returns success; names that do not fit the directory mean no file.
    @discardableResult
    static func write(_ directory: String, precision: Precision, key: Digest128,
                      matrices: [(name: String, matrix: PackedMatrix)], digests: DigestCache) -> Bool {
        guard !matrices.isEmpty, matrices.count <= maxMatrices,
              Set(matrices.map(\.name)).count == matrices.count else { return false }
        func align(_ n: Int) -> Int { (n + sectionAlignment - 1) / sectionAlignment * sectionAlignment }
        let directoryEnd = headerLength + matrices.count * entryLength
        var head = [UInt8](repeating: 0, count: align(directoryEnd))
        func put<T: FixedWidthInteger>(_ v: T, at offset: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { head[offset + i] = b } }
        }
        let zeros = [UInt8](repeating: 0, count: sectionAlignment + slack)
        // (matrix, section, padding after it) in file order.
        var layout: [(m: Int, s: Int, padding: Int)] = []
        var offset = head.count
        var sectionOffsets: [[Int]] = []
        for (m, (name, matrix)) in matrices.enumerated() {
            let nameBytes = Array(name.utf8)
            guard !nameBytes.isEmpty, nameBytes.count <= nameLength, !nameBytes.contains(0) else { return false }
            let sections = matrix.sections
            guard sections.count <= maxSections else { return false }
            var offsets: [Int] = []
            for (s, section) in sections.enumerated() {
                let next = align(offset + section.count + slack)
                offsets.append(offset)
                layout.append((m, s, next - offset - section.count))
                offset = next
            }
            sectionOffsets.append(offsets)
        }
        let fileLength = offset
        let sums = withExtendedLifetime(matrices) { checksums(matrices.flatMap { $0.matrix.sections }) }
        var sumIndex = 0
        for (m, (name, matrix)) in matrices.enumerated() {
            let base = headerLength + m * entryLength
            for (i, b) in name.utf8.enumerated() { head[base + i] = b }
            put(code(matrix.arithmetic), at: base + 72)
            put(UInt64(matrix.outFeatures), at: base + 80)
            put(UInt64(matrix.inFeatures), at: base + 88)
            for (s, o) in sectionOffsets[m].enumerated() {
                put(UInt64(o), at: base + 96 + 16 * s)
                put(sums[sumIndex], at: base + 104 + 16 * s)
                sumIndex += 1
            }
        }
        let directoryDigest = head.withUnsafeBytes { ContentHash.digest(UnsafeRawBufferPointer(rebasing: $0[headerLength ..< directoryEnd])) }
        for (i, b) in magic.enumerated() { head[i] = b }
        put(version, at: 16)
        put(UInt32(matrices.count), at: 20)
        put(key.low, at: 24); put(key.high, at: 32)
        put(directoryDigest.low, at: 40); put(directoryDigest.high, at: 48)
        put(UInt64(fileLength), at: 56)

        let path = path(directory, precision: precision, key: key)
        // Back-dated, so the stamp recorded below is settled (see the top of this file).
        let modified = nowNanoseconds() - 2 * settledAge
        let mtime = timespec(tv_sec: Int(modified / 1_000_000_000), tv_nsec: Int(modified % 1_000_000_000))
        let written: Bool = withExtendedLifetime(matrices) {
            head.withUnsafeBytes { headBytes in
                zeros.withUnsafeBytes { zeroBytes in
                    var parts = [headBytes]
                    for (m, s, padding) in layout {
                        parts.append(matrices[m].matrix.sections[s])
                        parts.append(UnsafeRawBufferPointer(rebasing: zeroBytes[0 ..< padding]))
                    }
                    return writeCacheFile(path, parts: parts, modified: mtime)
                }
            }
        }
        guard written else { return false }
        var info = stat()
        if stat(path, &info) == 0 {
            // (Were another load's file renamed over ours since, it holds the same bytes: the
            // packing is deterministic and the key covers its inputs.)
            let stamp = FileStamp(info)
            if stamp.size == Int64(fileLength), isSettled(stamp) {
                digests.store(ModelFiles.cacheKey(path), FileRecord(stamp: stamp, digest: directoryDigest, verified: true))
            }
        }
        pruneCacheFiles(directory, prefix: "packed-", keep: keep, keeping: path)
        return true
    }
}
