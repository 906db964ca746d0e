// The packed-weights cache (PackedWeightsCache.swift): a model whose int8 / bf16 packing comes
// from the cache computes exactly what a model packed afresh from the weights computes, and a
// cache file that is damaged, stale or foreign is refused and rewritten, never trusted.
import Foundation
@testable import M3Model
import XCTest

final class PackedWeightsCacheTests: XCTestCase {
    /// The precisions this CPU runs (int8 needs AVX2 or VNNI, bf16 AVX512-BF16).
    var precisions: [Precision] { [.int8, .bfloat16].filter { $0.resolved().precision == $0 } }

    /// Sequences for both encoder paths: short ones (≤ 64 tokens, the row-wise short path) and
    /// a long one (the packed gemm path), in one batch and alone.
    let sequences: [[Int32]] = {
        var state: UInt64 = 12345
        func ids(_ n: Int) -> [Int32] {
            [0] + (0 ..< n - 2).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Int32(3 + (state >> 33) % 60)
            } + [2]
        }
        return [ids(5), ids(17), ids(150)]
    }()

    func encodings(_ model: BGEM3) throws -> [Embedding] {
        try model.encode(tokenIDs: sequences) + model.encode(tokenIDs: [sequences[0]])
    }

    /// A first load packs and writes the cache file; the second maps it ("(cached)") and
    /// both encode bit for bit like a model packed afresh with the cache off.
    func testCachedPackingIsBitIdenticalToAFreshPacking() throws {
        XCTAssertFalse(precisions.isEmpty, "this CPU runs neither int8 nor bf16: nothing to test")
        let folder = try smallTokenizerModel()
        let directory = try temporaryFolder()
        let cache = ModelCache(directory: directory.path)
        for precision in precisions {
            let fresh = try BGEM3(folder: folder.path, precision: precision, cache: .disabled)
            XCTAssertFalse(fresh.loadTimings.packingFromCache)
            let reference = try encodings(fresh)

            let first = try BGEM3(folder: folder.path, precision: precision, cache: cache)
            XCTAssertFalse(first.loadTimings.packingFromCache, "\(precision)")
            XCTAssertNotNil(try packedFile(directory, precision))
            let second = try BGEM3(folder: folder.path, precision: precision, cache: cache)
            XCTAssertTrue(second.loadTimings.packingFromCache, "\(precision): \(second.loadTimings)")
            XCTAssertTrue(second.loadTimings.description.contains("(cached)"), second.loadTimings.description)
            XCTAssertEqual(try encodings(first), reference, "\(precision)")
            XCTAssertEqual(try encodings(second), reference, "\(precision)")
        }
        // Never beside the model; float32 packs nothing and writes no packed file.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("packed-") }, [])
        let f32 = try BGEM3(folder: folder.path, precision: .float32, cache: cache)
        XCTAssertFalse(f32.loadTimings.packingFromCache)
        XCTAssertNil(try packedFile(directory, .float32))
    }

    /// Any damage (a flipped bit in the weights, the directory or the header, truncation,
    /// another format version, another model's or precision's file under this name) means
    /// packing afresh: the outputs stay bit-identical and the rewritten file is the intact one.
    func testDamagedStaleOrForeignPackedCacheIsRebuilt() throws {
        let folder = try smallTokenizerModel()
        let directory = try temporaryFolder()
        let cache = ModelCache(directory: directory.path)
        for precision in precisions {
            let reference = try encodings(BGEM3(folder: folder.path, precision: precision, cache: .disabled))
            _ = try BGEM3(folder: folder.path, precision: precision, cache: cache)
            let url = try XCTUnwrap(packedFile(directory, precision))
            let intact = try Data(contentsOf: url)
            XCTAssertTrue(try BGEM3(folder: folder.path, precision: precision, cache: cache).loadTimings.packingFromCache)
            // Another precision's (or, for the only one, another plan's) valid file: a foreign key.
            let foreignKey = PackedWeightsFile.key(identity: "m3id2:other", precision: precision, plan: "other")
            var foreign = intact
            withUnsafeBytes(of: foreignKey.low.littleEndian) { foreign.replaceSubrange(24 ..< 32, with: $0) }
            withUnsafeBytes(of: foreignKey.high.littleEndian) { foreign.replaceSubrange(32 ..< 40, with: $0) }
            let offsets = sectionOffsets(intact)
            let sectionStart = try XCTUnwrap(offsets.min()), lastSection = try XCTUnwrap(offsets.max())
            let damages: [(String, Data)] = [
                ("bit in the packed weights", flipped(intact, at: sectionStart + 5, bit: 0x01)),
                ("bit in the last section", flipped(intact, at: lastSection, bit: 0x80)),
                ("bit in the directory", flipped(intact, at: 64 + 80, bit: 0x01)),  // the first matrix's out
                ("bit in the magic", flipped(intact, at: 3, bit: 0x20)),
                ("truncated", intact.prefix(intact.count - 4096)),
                ("truncated header", intact.prefix(40)),
                ("empty", Data()),
                ("another format version", replaced(intact, at: 16, PackedWeightsFile.version + 1)),
                ("foreign key", foreign),
                ("garbage", Data((0 ..< intact.count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) })),
            ]
            for (damage, bytes) in damages {
                try bytes.write(to: url)
                let model = try BGEM3(folder: folder.path, precision: precision, cache: cache)
                XCTAssertFalse(model.loadTimings.packingFromCache, "\(precision), \(damage)")
                XCTAssertEqual(try encodings(model), reference, "\(precision), \(damage)")
                XCTAssertEqual(try Data(contentsOf: url), intact, "\(precision), \(damage): rewritten intact")
                XCTAssertTrue(try BGEM3(folder: folder.path, precision: precision, cache: cache).loadTimings.packingFromCache,
                              "\(precision), \(damage): the rewritten file is used")
            }
        }
    }

    /// A cache folder that cannot be created (its parent is a file) only costs the packing.
    func testUnwritableCacheStillLoads() throws {
        let folder = try smallTokenizerModel()
        let file = try temporaryFolder().appendingPathComponent("a-file")
        try Data("not a folder".utf8).write(to: file)
        let cache = ModelCache(directory: file.appendingPathComponent("cache").path)
        for precision in precisions {
            let reference = try encodings(BGEM3(folder: folder.path, precision: precision, cache: .disabled))
            for _ in 0 ..< 2 {
                let model = try BGEM3(folder: folder.path, precision: precision, cache: cache)
                XCTAssertFalse(model.loadTimings.packingFromCache)
                XCTAssertEqual(try encodings(model), reference, "\(precision)")
            }
        }
    }

    /// The key covers the model, the precisions of what is packed and the host; the scheme
    /// version and the kernels' layout tags are in the same text.
    func testKeySeparatesModelsPrecisionsAndPlans() {
        let base = PackedWeightsFile.key(identity: "m3id2:a", precision: .int8, plan: "intermediate.dense bf16")
        XCTAssertEqual(base, PackedWeightsFile.key(identity: "m3id2:a", precision: .int8, plan: "intermediate.dense bf16"))
        XCTAssertNotEqual(base, PackedWeightsFile.key(identity: "m3id2:b", precision: .int8, plan: "intermediate.dense bf16"))
        XCTAssertNotEqual(base, PackedWeightsFile.key(identity: "m3id2:a", precision: .bfloat16, plan: "intermediate.dense bf16"))
        XCTAssertNotEqual(base, PackedWeightsFile.key(identity: "m3id2:a", precision: .int8, plan: "intermediate.dense f32"))
    }

    // MARK: Helpers

    func packedFile(_ directory: URL, _ precision: Precision) throws -> URL? {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .first { $0.hasPrefix("packed-\(precision)-") && $0.hasSuffix(".bin") }
            .map { directory.appendingPathComponent($0) }
    }

    /// Every section offset the directory lists (format in PackedWeightsCache.swift).
    func sectionOffsets(_ data: Data) -> [Int] {
        func u64(_ at: Int) -> Int { data.subdata(in: at ..< at + 8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) } }
        let count = data.subdata(in: 20 ..< 24).withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
        return (0 ..< count).flatMap { m in (0 ..< PackedWeightsFile.maxSections).map { u64(PackedWeightsFile.headerLength + m * PackedWeightsFile.entryLength + 96 + 16 * $0) } }.filter { $0 != 0 }
    }

    func flipped(_ data: Data, at offset: Int, bit: UInt8) -> Data {
        var copy = data
        copy[copy.startIndex + offset] ^= bit
        return copy
    }

    func replaced(_ data: Data, at offset: Int, _ value: UInt32) -> Data {
        var copy = data
        withUnsafeBytes(of: value.littleEndian) { copy.replaceSubrange(offset ..< offset + 4, with: $0) }
        return copy
    }

    /// The tiny fixture model with the 62-piece unigram-62.model as its tokenizer (cheap to
    /// build on every load with the cache off), as links in a temporary folder.
    func smallTokenizerModel() throws -> URL {
        let source = Fixtures.root.appendingPathComponent("models/tiny-safetensors")
        let folder = try temporaryFolder()
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "sentencepiece.bpe.model" {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name),
                                                       withDestinationURL: source.appendingPathComponent(name).resolvingSymlinksInPath())
        }
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("sentencepiece.bpe.model"),
                                                   withDestinationURL: Fixtures.root.appendingPathComponent("tokenizer/unigram-62.model"))
        return folder
    }

    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3-packed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
