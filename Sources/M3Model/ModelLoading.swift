// Helpers of BGEM3.init: bounded reads of model files, the cached tokenizer, load timings.
import Foundation
import M3Tokenizer

/// Where a model load spent its time, in seconds (wall clock).
///
/// A normal start (the cache knows the files) spends nearly all of it mapping the weights
/// and, for int8/bf16, their cached packing; the first start also hashes and verifies every
/// weight, builds the tokenizer's tables and packs the layers.
public struct LoadTimings: Sendable, Equatable, CustomStringConvertible {
    /// Reading and checking config.json, finding the files.
    public var config: Double = 0
    /// The tokenizer: mapping its cached tables, or building them from the model files.
    public var tokenizer: Double = 0
    /// The tokenizer's tables came from the cache (false: built from the model files).
    public var tokenizerFromCache = false
    /// Mapping the weight and head files and reading their tensor directories.
    public var weights: Double = 0
    /// Hashing the weights and checking every value is finite and every zip CRC (0 when
    /// the cache had already verified this version of the files).
    public var verification: Double = 0
    /// The weights' digest and verification came from the cache.
    public var identityFromCache = false
    /// Shape checks and the int8/bf16 packing of the layers: packing them (and writing the
    /// packed-weights cache), or mapping and checking the cached packing.
    public var packing: Double = 0
    /// The int8/bf16 packing came from the cache (false: packed now, or float32).
    public var packingFromCache = false
    /// The whole load.
    public var total: Double = 0

    public init() {}

    public var description: String {
        func ms(_ s: Double) -> String { String(format: "%.1f ms", s * 1000) }
        return "model load \(ms(total)): config \(ms(config)), tokenizer \(ms(tokenizer)) "
            + "(\(tokenizerFromCache ? "cached" : "built")), weights \(ms(weights)), verification \(ms(verification)) "
            + "(\(identityFromCache ? "cached" : "hashed")), packing \(ms(packing))\(packingFromCache ? " (cached)" : "")"
    }
}

extension DispatchTime {
    var secondsSince: Double { Double(DispatchTime.now().uptimeNanoseconds - uptimeNanoseconds) / 1e9 }
}

/// Model files read whole or opened for mapping, with errors as `ModelError`.
enum ModelFiles {
    /// sentencepiece.bpe.model: 5 MB for XLM-R.
    static let sentencepieceLimit = 64 << 20
    /// tokenizer.json: 17 MB for BAAI/bge-m3.
    static let tokenizerJSONLimit = 128 << 20
    /// Any whole-file read of the first-generation identity (config, heads, SentencePiece).
    static let legacySmallFileLimit = 256 << 20

    static func read(_ path: String, limit: Int, missingHint: String = "no such file") throws -> [UInt8] {
        do { return try RegularFile.read(path, limit: limit).bytes } catch { throw modelError(error, path: path, missingHint: missingHint) }
    }

    static func open(_ path: String) throws -> (fd: Int32, info: stat) {
        do { return try RegularFile.open(path) } catch { throw modelError(error, path: path) }
    }

    static func modelError(_ error: RegularFileError, path: String, missingHint: String = "no such file; check the path or download the model again") -> ModelError {
        switch error {
        case .missing: .missingFile(path: path, hint: missingHint)
        case .notRegular(let kind): .notRegularFile(path: path, kind: kind)
        case .tooLarge(let size, let limit): .fileTooLarge(path: path, size: size, limit: limit)
        case .unreadable(let why): .invalidFormat(path: path, detail: why)
        }
    }

    /// The digest cache's key for a file: its absolute path, "." and ".." resolved
    /// (symbolic links are not: their target's stamp is what is compared).
    static func cacheKey(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// Loads the tokenizer from its cached tables when the cache has them for exactly these
/// source files, else builds it (and caches the tables).
struct TokenizerLoader {
    let cache: ModelCache
    let digests: DigestCache

    struct Loaded {
        let tokenizer: XLMRobertaTokenizer
        let modelDigest: Digest128
        let tokenizerJSONDigest: Digest128?
        let fromCache: Bool
    }

    /// Version of the image layout and of the tokenizer's tables; part of the cache key,
    /// so a release that builds them differently never reads an older image.
    static let imageVersion = "csp-image-1"

    func load(model: String, tokenizerJSON: String?) throws -> Loaded {
        var model = try Source(path: model, limit: ModelFiles.sentencepieceLimit, digests: digests)
        var json = try tokenizerJSON.map { try Source(path: $0, limit: ModelFiles.tokenizerJSONLimit, digests: digests) }
        var keyBytes = Array("\(Self.imageVersion)\u{0}".utf8)
        model.digest.append(to: &keyBytes)
        json?.digest.append(to: &keyBytes)
        let key = ContentHash.digest(keyBytes)

        if let directory = cache.directory,
           let cached = TokenizerCacheFile.open(TokenizerCacheFile.path(directory, key: key), key: key),
           let tokenizer = try? XLMRobertaTokenizer(image: cached.image, keepingAlive: cached.file) {
            return Loaded(tokenizer: tokenizer, modelDigest: model.digest, tokenizerJSONDigest: json?.digest, fromCache: true)
        }
        let tokenizer = try XLMRobertaTokenizer(model: try model.contents(), modelPath: model.path,
                                                tokenizerJSON: try json?.contents(), tokenizerJSONPath: json?.path)
        if let directory = cache.directory {
            TokenizerCacheFile.write(directory, key: key, image: tokenizer.serializedImage())
        }
        return Loaded(tokenizer: tokenizer, modelDigest: model.digest, tokenizerJSONDigest: json?.digest, fromCache: false)
    }

    /// One source file: its digest from the digest cache when its stamp matches (no read),
    /// else read (bounded) and hashed.
    private struct Source {
        let path: String
        let digest: Digest128
        private var bytes: [UInt8]?
        private let info: stat
        private let limit: Int

        init(path: String, limit: Int, digests: DigestCache) throws {
            let (fd, info) = try ModelFiles.open(path)
            defer { close(fd) }
            self.path = path
            self.info = info
            self.limit = limit
            let stamp = FileStamp(info)
            let key = ModelFiles.cacheKey(path)
            if let known = digests.lookup(key, stamp: stamp) {
                digest = known.digest
                bytes = nil
            } else {
                let read: [UInt8]
                do { read = try RegularFile.read(fd, info: info, limit: limit) } catch { throw ModelFiles.modelError(error, path: path) }
                bytes = read
                digest = ContentHash.digest(read)
                digests.store(key, FileRecord(stamp: stamp, digest: digest, verified: false))
            }
        }

        /// The bytes, read now if the digest came from the cache; they must still be the
        /// bytes the digest describes (same stamp), or the load fails rather than caching
        /// tables under the wrong key.
        mutating func contents() throws -> [UInt8] {
            if let bytes { return bytes }
            let (fd, info) = try ModelFiles.open(path)
            defer { close(fd) }
            guard FileStamp(info) == FileStamp(self.info) else {
                throw ModelError.invalidFormat(path: path, detail: "the file changed while the model was loading; try again")
            }
            let read: [UInt8]
            do { read = try RegularFile.read(fd, info: info, limit: limit) } catch { throw ModelFiles.modelError(error, path: path) }
            bytes = read
            return read
        }
    }
}
