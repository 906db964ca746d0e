// What m3search derives from a model folder and keeps between runs, so that a start costs
// an mmap and a few stats instead of hashing 2.3 GB and rebuilding the tokenizer:
//
//   <cache>/file-digests          one line per model file: its stat stamp, XXH3-128 digest,
//                                 and whether its tensors were verified (finite, zip CRCs)
//   <cache>/tokenizer-<key>.bin   the tokenizer's tables, used in place from a memory map;
//                                 <key> digests the source files, so an edit makes a new key
//   <cache>/packed-<precision>-<key>.bin
//                                 the int8 / bf16 packing of the linear layers, used in place
//                                 from a memory map (PackedWeightsCache.swift); <key> digests
//                                 the model's identity, the precisions and the packing scheme
//
// The cache lives in the user's cache folder, never beside the model: model folders are
// often read-only or shared (the Hugging Face cache), and an edit there would change the
// files the identity covers. Everything read back is untrusted: bounded, checksummed and
// validated, and any mismatch means "rebuild", never a crash or a wrong answer.
import Foundation
import M3Tokenizer
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where model-derived caches are kept (see `BGEM3.init(folder:precision:cache:)`).
///
/// ```swift
/// let model = try BGEM3(folder: dir, cache: ModelCache(directory: "/tmp/m3cache"))
/// ```
public struct ModelCache: Sendable, Equatable {
    /// The folder, or nil: derive everything on every load and write nothing.
    public let directory: String?

    public init(directory: String?) { self.directory = directory }

    /// No cache: every load hashes and verifies the weights and builds the tokenizer.
    public static let disabled = ModelCache(directory: nil)

    /// $M3SEARCH_CACHE_DIR (empty or "off" disables the cache), else
    /// $XDG_CACHE_HOME/m3search, else ~/.cache/m3search.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ModelCache {
        if let explicit = environment["M3SEARCH_CACHE_DIR"] {
            return explicit.isEmpty || explicit == "off" ? .disabled : ModelCache(directory: explicit)
        }
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            return ModelCache(directory: (xdg as NSString).appendingPathComponent("m3search"))
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        guard !home.isEmpty else { return .disabled }
        return ModelCache(directory: (home as NSString).appendingPathComponent(".cache/m3search"))
    }
}

// MARK: - File digests

/// What the digest cache remembers about one file version.
struct FileRecord: Equatable {
    var stamp: FileStamp
    var digest: Digest128
    /// Its tensors were checked (every value finite, every zip entry's CRC-32).
    var verified: Bool
}

/// The `file-digests` table: path → record, at most `capacity` entries (least recently
/// used dropped). Two processes saving at once lose one's update, which only costs a
/// re-hash later.
final class DigestCache {
    static let fileName = "file-digests"
    static let header = "m3search file digests v1"
    static let capacity = 256
    static let maxFileBytes = 1 << 20

    private let path: String?
    /// Most recently used last.
    private var records: [(path: String, record: FileRecord)] = []
    private var dirty = false

    init(_ cache: ModelCache) {
        path = cache.directory.map { ($0 as NSString).appendingPathComponent(Self.fileName) }
        guard let path, let bytes = try? RegularFile.read(path, limit: Self.maxFileBytes).bytes,
              let text = String(validating: bytes, as: UTF8.self) else { return }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first == Substring(Self.header) else { return }
        lines.removeFirst()
        for line in lines.suffix(Self.capacity) {
            if let parsed = Self.parse(line) { records.append(parsed) }
        }
    }

    /// The record for `path` if its stamp still matches (the file was not touched since).
    func lookup(_ path: String, stamp: FileStamp) -> FileRecord? {
        guard let i = records.lastIndex(where: { $0.path == path }), records[i].record.stamp == stamp else { return nil }
        return records[i].record
    }

    func store(_ path: String, _ record: FileRecord) {
        guard self.path != nil, !path.contains("\n") else { return }
        if let i = records.lastIndex(where: { $0.path == path }) {
            if records[i].record == record, i == records.count - 1 { return }
            records.remove(at: i)
        }
        records.append((path, record))
        if records.count > Self.capacity { records.removeFirst(records.count - Self.capacity) }
        dirty = true
    }

    /// Writes the table if it changed; failures are ignored (the cache is optional).
    func save() {
        guard dirty, let path else { return }
        var text = Self.header + "\n"
        for (p, r) in records {
            let s = r.stamp
            text += "\(r.digest) \(r.verified ? 1 : 0) \(s.device) \(s.inode) \(s.size) \(s.mtimeNanoseconds) \(s.ctimeNanoseconds) \(p)\n"
        }
        if writeCacheFile(path, Array(text.utf8)) { dirty = false }
    }

    /// "<digest> <verified> <dev> <ino> <size> <mtime> <ctime> <path>"; nil when malformed.
    private static func parse(_ line: Substring) -> (String, FileRecord)? {
        let fields = line.split(separator: " ", maxSplits: 7, omittingEmptySubsequences: false)
        guard fields.count == 8, let digest = Digest128(hex: fields[0]), fields[1] == "0" || fields[1] == "1",
              let device = UInt64(fields[2]), let inode = UInt64(fields[3]), let size = Int64(fields[4]),
              let mtime = Int64(fields[5]), let ctime = Int64(fields[6]), fields[7].hasPrefix("/") else { return nil }
        let stamp = FileStamp(device: device, inode: inode, size: size, mtimeNanoseconds: mtime, ctimeNanoseconds: ctime)
        return (String(fields[7]), FileRecord(stamp: stamp, digest: digest, verified: fields[1] == "1"))
    }
}

// MARK: - Tokenizer images

/// `tokenizer-<key>.bin`: a 64-byte header, then the CSentencePiece image.
///
///     [0, 16)   "m3search-tokcach"   magic
///     [16, 20)  UInt32 format version (1)
///     [20, 24)  UInt32 0
///     [24, 40)  key: digest of the source files (also in the file name)
///     [40, 48)  UInt64 image length
///     [48, 56)  UInt64 XXH3-64 of the image
///     [56, 64)  0
///     [64, …)   image
enum TokenizerCacheFile {
    static let magic = Array("m3search-tokcach".utf8)
    static let version: UInt32 = 1
    static let headerLength = 64
    /// The XLM-R tables take ~20 MB; nothing genuine comes near this.
    static let maxImageBytes = 1 << 30
    /// Tokenizer images kept; older ones (other models, edited tokenizers) are removed.
    static let keep = 4

    static func path(_ directory: String, key: Digest128) -> String {
        (directory as NSString).appendingPathComponent("tokenizer-\(key).bin")
    }

    /// The mapped file and the image inside it when the file exists and is intact for
    /// `key`; nil otherwise (missing, torn, foreign or damaged: the caller rebuilds).
    static func open(_ path: String, key: Digest128) -> (file: MappedFile, image: UnsafeRawBufferPointer)? {
        guard let file = try? MappedFile(path: path, adviseWillNeed: false) else { return nil }
        let bytes = file.bytes
        guard bytes.count >= headerLength, bytes.count - headerLength <= maxImageBytes,
              Array(bytes[0 ..< 16]) == magic,
              bytes.readLE(UInt32.self, at: 16) == version,
              bytes.readLE(UInt64.self, at: 24) == key.low, bytes.readLE(UInt64.self, at: 32) == key.high,
              let length = bytes.readLE(UInt64.self, at: 40), length == UInt64(bytes.count - headerLength),
              let image = bytes.slice(headerLength, Int(length)),
              bytes.readLE(UInt64.self, at: 48) == ContentHash.checksum64(image) else { return nil }
        return (file, image)
    }

    /// Writes the image for `key` (atomically) and prunes old images. Returns success.
    @discardableResult
    static func write(_ directory: String, key: Digest128, image: [UInt8]) -> Bool {
        var bytes = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        put(version); put(UInt32(0))
        key.append(to: &bytes)
        put(UInt64(image.count))
        put(image.withUnsafeBytes { ContentHash.checksum64($0) })
        put(UInt64(0))
        bytes += image
        let path = path(directory, key: key)
        guard writeCacheFile(path, bytes) else { return false }
        pruneCacheFiles(directory, prefix: "tokenizer-", keep: keep, keeping: path)
        return true
    }
}

/// Removes the cache files `<prefix>*.bin` in `directory` beyond `current` and the `keep − 1`
/// most recently modified others (`current` may be back-dated, so it is kept by name).
func pruneCacheFiles(_ directory: String, prefix: String, keep: Int, keeping current: String) {
    let fm = FileManager.default
    guard let names = try? fm.contentsOfDirectory(atPath: directory) else { return }
    let others = names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".bin") }.compactMap { name -> (String, Date)? in
        let p = (directory as NSString).appendingPathComponent(name)
        guard p != current, let date = (try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date else { return nil }
        return (p, date)
    }
    for (p, _) in others.sorted(by: { $0.1 > $1.1 }).dropFirst(max(0, keep - 1)) { try? fm.removeItem(atPath: p) }
}

/// Writes a cache file by rename, so readers see the old or the new file, never half of
/// one. Creates the folder (mode 0700) when needed. Returns false on any failure.
func writeCacheFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { writeCacheFile(path, parts: [$0]) }
}

/// `writeCacheFile` of the concatenation of `parts`, written one after another (a packed
/// weights file is hundreds of MB: it is never assembled in memory). `modified`, when given,
/// becomes the file's mtime (see `PackedWeightsFile.write`).
func writeCacheFile(_ path: String, parts: [UnsafeRawBufferPointer], modified: timespec? = nil) -> Bool {
    let directory = (path as NSString).deletingLastPathComponent
    if !FileManager.default.fileExists(atPath: directory) {
        guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                          attributes: [.posixPermissions: 0o700])) != nil else { return false }
    }
    let temporary = (directory as NSString).appendingPathComponent(".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))")
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    var ok = true
    for raw in parts where ok && raw.count > 0 {
        var written = 0
        while written < raw.count {
            let n = write(fd, raw.baseAddress! + written, raw.count - written)
            if n < 0 { if errno == EINTR { continue }; ok = false; break }
            written += n
        }
    }
    if ok, let modified {
        var times = [modified, modified]  // atime, mtime
        ok = futimens(fd, &times) == 0
    }
    guard close(fd) == 0, ok, rename(temporary, path) == 0 else {
        unlink(temporary)
        return false
    }
    return true
}
