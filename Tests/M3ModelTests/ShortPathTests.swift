import Foundation
@testable import M3Model
import XCTest

/// The short path (queries) against the long path, and the batching promise: a short text's
/// outputs are bit for bit the same alone, in a batch of short texts, next to long texts, or
/// encoded from several threads at once. (Its parity with FlagEmbedding is ParityTests: most of
/// the fixture texts are short.)
final class ShortPathTests: XCTestCase {
    /// Every precision this CPU runs (int8 / bf16 resolve to float32 without their instructions).
    var precisions: [Precision] {
        var seen: [Precision] = []
        for p in Precision.allCases where !seen.contains(p.resolved().precision) { seen.append(p.resolved().precision) }
        return seen
    }

    /// Models are loaded once per (folder, precision) for all tests (loading dominates them).
    nonisolated(unsafe) static var loaded: [String: BGEM3] = [:]
    static let lock = NSLock()
    func model(_ name: String, _ precision: Precision = .float32) throws -> BGEM3 {
        Self.lock.lock()
        defer { Self.lock.unlock() }
        let key = "\(name) \(precision)"
        if let m = Self.loaded[key] { return m }
        let m = try BGEM3(folder: Fixtures.model(name), precision: precision)
        Self.loaded[key] = m
        return m
    }

    func texts() throws -> [String] {
        try Fixtures.reference("tiny-safetensors").encodings[0].items.map(\.text)
    }

    /// The same forward pass through sgemm (long path) and m3_f32_linear / the packed
    /// kernels on shared conversions (short path): equal within float rounding.
    func testShortPathMatchesLongPath() throws {
        for name in ["tiny-safetensors", "tiny-bin"] {
            for precision in precisions {
                let model = try model(name, precision)
                let ids = try texts().map { model.tokenizer.encode($0, maxLength: Encoder.shortSequenceLimit) }
                let total = ids.reduce(0) { $0 + $1.count }
                let h = model.config.hiddenSize
                var long = [Float](repeating: .nan, count: total * h), short = long
                long.withUnsafeMutableBufferPointer { model.encoder.forward(ids, total: total, into: $0.baseAddress!, path: .long) }
                short.withUnsafeMutableBufferPointer { model.encoder.forward(ids, total: total, into: $0.baseAddress!, path: .short) }
                XCTAssertFalse(short.contains { !$0.isFinite })
                // float32 sums in another order differ by a few ulps per layer (relative to
                // max(1, |x|): LayerNorm'd states reach ~10 here). In int8 a rounding difference
                // can move one activation by a quantization step, and in bfloat16 by one of its
                // 8-bit mantissa's steps (2⁻⁸ relative; seen: 3.0e-3 with AVX512-BF16 kernels).
                let tolerance: Float = precision == .int8 ? 2e-2 : precision == .bfloat16 ? 1e-2 : 1e-5
                let worst = zip(long, short).reduce(Float(0)) { max($0, abs($1.0 - $1.1) / max(1, abs($1.0))) }
                XCTAssertLessThanOrEqual(worst, tolerance, "\(name) \(precision)")
            }
        }
    }

    /// Short texts give exactly the bits they give alone, whatever they are batched with.
    func testBatchedShortTextsAreIdenticalToEachAlone() throws {
        let all = try texts()
        for precision in precisions {
            let model = try model("tiny-safetensors", precision)
            let options = EncodeOptions(maxLength: 512)
            let lengths = try all.map { try model.encode([$0], options: options)[0].tokenIDs.count }
            let short = all.indices.filter { lengths[$0] <= BGEM3.batchInvariantMaxTokens }
            let long = all.indices.filter { lengths[$0] > BGEM3.batchInvariantMaxTokens }
            XCTAssertGreaterThan(short.count, 20)
            XCTAssertGreaterThan(long.count, 0)
            let alone = try all.map { try model.encode([$0], options: options)[0] }

            // A batch of short texts only, then every text together (short and long packed in
            // one call, split into a short and a long pass).
            let batch = try model.encode(short.map { all[$0] }, options: options)
            for (i, e) in zip(short, batch) { XCTAssertEqual(bits(e), bits(alone[i]), "\(precision) short batch, text \(i)") }
            let mixed = try model.encode(all, options: EncodeOptions(maxLength: 512, batchTokens: 100_000))
            for i in short { XCTAssertEqual(bits(mixed[i]), bits(alone[i]), "\(precision) mixed batch, short text \(i)") }
            // Long texts go through sgemm, whose sums depend on the batch's shape: equal within
            // rounding. In int8 such a rounding difference can move an activation across a
            // quantization step (seen: 1.3e-5 on one ColBERT value).
            let tolerance: Float = precision == .int8 ? 1e-3 : 1e-5
            for i in long {
                XCTAssertEqual(mixed[i].tokenIDs, alone[i].tokenIDs)
                XCTAssertLessThanOrEqual(maxAbsDiff(mixed[i].dense!, alone[i].dense!), tolerance, "\(precision) long text \(i)")
                XCTAssertLessThanOrEqual(maxAbsDiff(mixed[i].colbert!.values, alone[i].colbert!.values), tolerance,
                                         "\(precision) long text \(i) ColBERT")
            }
        }
    }

    /// Concurrent calls on one model (a server's batches) give what sequential calls give.
    func testConcurrentBatchesMatchSequential() throws {
        let all = try texts()
        let model = try model("tiny-bin")
        let batches = (0..<8).map { b in (0..<(b % 4 + 1) * 3).map { all[(b * 7 + $0 * 5) % all.count] } }
        let sequential = try batches.map { try model.encode($0) }
        // Each batch three times, all at once; every run writes its own slot.
        final class Slots: @unchecked Sendable {  // guarded by `lock`
            var values: [[Embedding]?]
            let lock = NSLock()
            init(_ n: Int) { values = Array(repeating: nil, count: n) }
        }
        let runs = Slots(batches.count * 3)
        DispatchQueue.concurrentPerform(iterations: runs.values.count) { i in
            let out = try? model.encode(batches[i % batches.count])
            runs.lock.lock()
            runs.values[i] = out
            runs.lock.unlock()
        }
        for (i, out) in runs.values.enumerated() {
            XCTAssertEqual(out?.map(bits), sequential[i % batches.count].map(bits), "run \(i)")
        }
    }

    /// An embedding's every bit (Float's == would take -0 for +0).
    func bits(_ e: Embedding) -> [UInt32] {
        e.tokenIDs.map { UInt32(bitPattern: $0) } + [0xFFFF_FFFF] + (e.dense ?? []).map(\.bitPattern) + [0xFFFF_FFFF]
            + (e.sparse?.ids ?? []).map { UInt32(bitPattern: $0) } + (e.sparse?.weights ?? []).map(\.bitPattern)
            + [0xFFFF_FFFF] + (e.colbert?.values ?? []).map(\.bitPattern)
    }
}
