// WeightFile.load against files written by torch.save and safetensors, with expected
// values from torch itself (Fixtures/weights/make_weight_fixtures.py), and against
// truncated, malformed and hostile files.
import Foundation
@testable import M3Model
import XCTest

final class WeightLoadingTests: XCTestCase {

    // MARK: Valid files match torch exactly

    func testFloat32MatchesTorch() throws {
        try assertMatchesTorch("f32")
    }

    func testFloat16MatchesTorch() throws {
        try assertMatchesTorch("f16")
    }

    func testBFloat16MatchesTorch() throws {
        try assertMatchesTorch("bf16")
    }

    /// Each format of each dtype holds exactly the float tensors torch reports, value for value:
    /// views (transposed, sliced with a storage offset, expanded), an nn.Parameter, a 0-size
    /// tensor, a scalar, signed zeros and subnormals.
    private func assertMatchesTorch(_ tag: String) throws {
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: fixture("expected_\(tag).json"))))
        for file in ["model_\(tag).pt", "model_\(tag).safetensors"] {
            let dict = try WeightFile.load(fixture(file))
            XCTAssertEqual(dict.path, fixture(file))
            XCTAssertEqual(dict.names, expected.tensors.keys.sorted(), file)
            for (name, want) in expected.tensors {
                let tensor = try dict.tensor(name, shape: want.shape)
                XCTAssertEqual(tensor.count, want.values.count, "\(file) \(name)")
                let got = tensor.toArray().map(\.bitPattern)
                XCTAssertEqual(got, want.values.map { Float($0).bitPattern }, "\(file) \(name)")
            }
            // Non-float tensors (the int64 position_ids buffer) load, and fail only when asked for.
            for name in expected.unsupported {
                XCTAssertNil(dict[name])
                XCTAssertThrowsError(try dict.tensor(name, shape: [1, 6]), file) { error in
                    guard case .unsupportedDType(_, let tensorName, _) = error as? ModelError else {
                        return XCTFail("\(file): expected unsupportedDType, got \(error)")
                    }
                    XCTAssertEqual(tensorName, name)
                }
            }
        }
    }

    /// float16 / bfloat16 tensors are converted at their first use; read a row at a time
    /// (as the encoder reads the word-embedding table) they give torch's values both before
    /// and after that.
    func testHalfTensorRowsMatchTorchBeforeAndAfterConversion() throws {
        for tag in ["f16", "bf16"] {
            let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: fixture("expected_\(tag).json"))))
            for file in ["model_\(tag).pt", "model_\(tag).safetensors"] {
                let dict = try WeightFile.load(fixture(file))
                var checked = 0
                for (name, want) in expected.tensors where want.shape.count == 2 && want.shape.allSatisfy({ $0 > 0 }) {
                    let tensor = try dict.tensor(name, shape: want.shape)
                    let (rows, width) = (want.shape[0], want.shape[1])
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: width)
                    defer { scratch.deallocate() }
                    func byRows() -> [UInt32] {
                        (0..<rows).flatMap { r in UnsafeBufferPointer(start: tensor.row(r, scratch: scratch), count: width).map(\.bitPattern) }
                    }
                    let torch = want.values.map { Float($0).bitPattern }
                    XCTAssertEqual(byRows(), torch, "\(file) \(name), rows before conversion")
                    XCTAssertEqual(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count).map(\.bitPattern), torch, "\(file) \(name)")
                    XCTAssertEqual(byRows(), torch, "\(file) \(name), rows after conversion")
                    checked += 1
                }
                XCTAssertGreaterThan(checked, 0, file)
            }
        }
    }

    /// Every float16 and bfloat16 bit pattern converts exactly as Swift's own conversion does.
    func testEveryHalfAndBFloat16Value() throws {
        let all = (0...0xFFFF).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let header = #"{"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]},"b":{"dtype":"BF16","shape":[65536],"data_offsets":[131072,262144]}}"#
        let dict = try WeightFile.load(try temporaryFile(safetensors(header, data: all + all)))
        let halves = try dict.tensor("h", shape: [65536]).toArray(), bfloats = try dict.tensor("b", shape: [65536]).toArray()
        #if !(os(macOS) && arch(x86_64))  // no Float16 on Intel Macs
        let badHalves = (0...0xFFFF).filter { halves[$0].bitPattern != Float(Float16(bitPattern: UInt16($0))).bitPattern }
        XCTAssertEqual(badHalves.prefix(8).map { String($0, radix: 16) }, [], "float16 bit patterns converted wrongly")
        #endif
        let badBFloats = (0...0xFFFF).filter { bfloats[$0].bitPattern != UInt32($0) << 16 }
        XCTAssertEqual(badBFloats.prefix(8).map { String($0, radix: 16) }, [], "bfloat16 bit patterns converted wrongly")
    }

    #if os(Linux)
    /// Contiguous float32 tensors point into the file's mapping (no copy); others do not.
    func testFloat32IsReadInPlace() throws {
        // The kernel lists mappings by their resolved path.
        func resolved(_ file: String) -> String { URL(fileURLWithPath: fixture(file)).resolvingSymlinksInPath().path }
        for file in ["model_f32.pt", "model_f32.safetensors"] {
            let dict = try WeightFile.load(fixture(file))
            for name in ["dense.weight", "views.rows", "special"] {
                XCTAssertEqual(try mappedPath(of: XCTUnwrap(dict[name]).pointer), resolved(file), "\(file) \(name)")
            }
        }
        // torch.save keeps the transpose's strides: gathered into owned memory.
        let transposed = try XCTUnwrap(WeightFile.load(fixture("model_f32.pt"))["views.transposed"])
        XCTAssertNotEqual(try mappedPath(of: transposed.pointer), resolved("model_f32.pt"))
        let half = try WeightFile.load(fixture("model_f16.pt"))
        XCTAssertNotEqual(try mappedPath(of: XCTUnwrap(half["dense.weight"]).pointer), resolved("model_f16.pt"))
    }

    /// The file mapped at `pointer`, from /proc/self/maps.
    private func mappedPath(of pointer: UnsafePointer<Float>) throws -> String? {
        let address = UInt(bitPattern: pointer)
        // /proc files report size 0, so read to the end rather than by size.
        let maps = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/maps")).readToEnd() ?? Data()
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            let range = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            if range.count == 2, range[0] <= address, address < range[1] {
                return fields.count == 6 ? fields[5].trimmingCharacters(in: .whitespaces) : nil
            }
        }
        return nil
    }
    #endif

    func testPointerStaysValidAfterStateDictIsGone() throws {
        var tensor: Tensor?
        do { tensor = try WeightFile.load(fixture("model_f32.pt"))["dense.weight"] }
        let kept = try XCTUnwrap(tensor)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: fixture("expected_f32.json"))))
        XCTAssertEqual(kept.shape, [3, 4])
        XCTAssertEqual(withExtendedLifetime(kept) { Array(UnsafeBufferPointer(start: kept.pointer, count: kept.count)) },
                       expected.tensors["dense.weight"]?.values.map { Float($0) })
    }

    func testUnalignedFloat32IsCopied() throws {
        let dict = try WeightFile.load(fixture("unaligned_f32.safetensors"))
        XCTAssertEqual(dict.names, ["x"])  // "pad" is U8
        XCTAssertEqual(try dict.tensor("x", shape: [3]).toArray(), [1.5, -2.25, 1e-3])
    }

    /// Written by Python's zipfile: no 64-byte alignment; without zip64 records, and with
    /// zip64 sizes and offsets in every header (as in checkpoints over 4 GB).
    func testPlainAndZip64Archives() throws {
        for file in ["crafted_ok.pt", "crafted_zip64.pt"] {
            let dict = try WeightFile.load(fixture(file))
            XCTAssertEqual(try dict.tensor("w", shape: [2, 2]).toArray(), [1, 2, 3, 4], file)
        }
    }

    func testHeaderOnlySafetensors() throws {
        let path = try temporaryFile(safetensors(#"{"__metadata__":{"format":"pt"}}"#))
        XCTAssertEqual(try WeightFile.load(path).names, [])
    }

    // MARK: Lookup errors name the tensor

    func testShapeMismatchNamesTensor() throws {
        let dict = try WeightFile.load(fixture("model_f32.safetensors"))
        XCTAssertThrowsError(try dict.tensor("dense.weight", shape: [4, 3])) { error in
            XCTAssertEqual(error as? ModelError, .shapeMismatch(path: fixture("model_f32.safetensors"), name: "dense.weight",
                                                                expected: [4, 3], actual: [3, 4]))
            XCTAssertTrue("\(error)".contains("dense.weight"))
        }
    }

    func testMissingTensorNamesTensor() throws {
        let dict = try WeightFile.load(fixture("model_f32.pt"))
        XCTAssertNil(dict["encoder.layer.0.output.dense.weight"])
        XCTAssertThrowsError(try dict.tensor("encoder.layer.0.output.dense.weight", shape: [4])) { error in
            XCTAssertEqual(error as? ModelError, .missingTensor(path: fixture("model_f32.pt"), name: "encoder.layer.0.output.dense.weight"))
        }
    }

    func testMissingFile() {
        let error = loadError("/nonexistent/m3search/model.safetensors")
        guard case .missingFile = error else { return XCTFail("\(String(describing: error))") }
    }

    func testUnknownFormat() throws {
        let error = loadError(try temporaryFile(Array("this is not a weight file at all".utf8)))
        guard case .invalidFormat = error else { return XCTFail("\(String(describing: error))") }
    }

    // MARK: Malformed safetensors

    func testTruncatedSafetensors() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("model_f32.safetensors"))))
        let headerEnd = 8 + Int(bytes[0]) + Int(bytes[1]) << 8
        for length in [0, 5, 8, 40, headerEnd - 1, headerEnd + 3, bytes.count - 1] {
            let error = loadError(try temporaryFile(Array(bytes.prefix(length))))
            guard case .truncated = error else { return XCTFail("cut at \(length): \(String(describing: error))") }
        }
    }

    func testOversizedHeaderLength() throws {
        var bytes = safetensors(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        bytes.replaceSubrange(0..<8, with: [0, 0, 0, 0, 0, 1, 0, 0])  // 2^40
        let error = loadError(try temporaryFile(bytes))
        guard case .invalidFormat(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("header length"), detail)
    }

    func testOverlappingOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let error = loadError(try temporaryFile(safetensors(header, data: Array(repeating: 0, count: 12))))
        guard case .invalidFormat(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("overlap"), detail)
    }

    func testOutOfBoundsOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[1000,1016]}}"#
        let error = loadError(try temporaryFile(safetensors(header, data: Array(repeating: 0, count: 16))))
        guard case .truncated(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("'a'"), detail)
    }

    func testMalformedHeaders() throws {
        let headers = [
            #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,      // 3 floats ≠ 8 bytes
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,      // end before begin
            #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,     // negative dimension
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,        // one offset
            #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#,    // fractional dimension
            #"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#,                  // no shape
            #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,  // overflow
            #"{"a": ["#,                                                      // not JSON
        ]
        for header in headers {
            let error = loadError(try temporaryFile(safetensors(header, data: Array(repeating: 0, count: 8))))
            guard case .invalidFormat = error else { return XCTFail("\(header): \(String(describing: error))") }
        }
    }

    func testUnsupportedDTypeNamesTensor() throws {
        let header = #"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        let path = try temporaryFile(safetensors(header, data: Array(repeating: 0, count: 16)))
        let dict = try WeightFile.load(path)
        XCTAssertEqual(dict.names, ["w"])
        XCTAssertThrowsError(try dict.tensor("ids", shape: [1])) { error in
            XCTAssertEqual(error as? ModelError, .unsupportedDType(path: path, name: "ids", dtype: "I64"))
        }
    }

    // MARK: Hostile and malformed PyTorch checkpoints

    func testPickleCallingOsSystemIsRefusedAndNothingRuns() throws {
        let marker = "/tmp/m3search-weights-fixture-pwned-5c1e9d"  // the command in the fixture: touch <marker>
        try? FileManager.default.removeItem(atPath: marker)
        let error = loadError(fixture("hostile_os_system.pt"))
        guard case .unsafePickle(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("posix.system") || detail.contains("os.system"), detail)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testStackGlobalEvalIsRefused() {
        let error = loadError(fixture("hostile_stack_global.pt"))
        guard case .unsafePickle(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("builtins.eval"), detail)
    }

    func testUnsupportedOpcodeIsRefused() {
        let error = loadError(fixture("unsupported_opcode.pt"))
        guard case .unsafePickle(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("0x69"), detail)  // INST
    }

    func testDeepNestingIsRefused() {
        for file in ["deep_tuples.pt", "deep_marks.pt"] {
            let error = loadError(fixture(file))
            guard case .unsafePickle(_, let detail) = error else { return XCTFail("\(file): \(String(describing: error))") }
            XCTAssertTrue(detail.contains("nested deeper"), detail)
        }
    }

    func testViewOutsideStorageNamesTensor() {
        let error = loadError(fixture("view_out_of_bounds.pt"))
        guard case .invalidFormat(_, let detail) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(detail.contains("'w'") && detail.contains("4-element storage"), detail)
    }

    func testArchiveProblems() {
        let cases: [(file: String, says: String)] = [
            ("compressed.pt", "compressed"),
            ("unsafe_name.pt", "unsafe entry name"),
            ("entry_past_end.pt", "extends past"),
            ("big_endian.pt", "byte order"),
            ("missing_storage.pt", "not in the archive"),
            ("view_too_large.pt", ".contiguous()"),
            ("legacy.pt", "zip format"),
        ]
        for (file, says) in cases {
            let error = loadError(fixture(file))
            guard case .invalidFormat(_, let detail) = error else { XCTFail("\(file): \(String(describing: error))"); continue }
            XCTAssertTrue(detail.contains(says), "\(file): \(detail)")
        }
    }

    func testTruncatedCheckpoint() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture("model_f32.pt"))))
        for length in [4, 100, bytes.count / 2, bytes.count - 1] {
            let error = loadError(try temporaryFile(Array(bytes.prefix(length))))
            guard case .truncated = error else { return XCTFail("cut at \(length): \(String(describing: error))") }
        }
    }

    // MARK: Helpers

    private struct Expected: Decodable {
        struct Values: Decodable {
            let shape: [Int]
            let values: [Double]
        }
        let tensors: [String: Values]
        let unsupported: [String]
    }

    /// Fixtures/weights/<name>, found from this file's path up to the package root.
    private func fixture(_ name: String) -> String {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path), folder.path != "/" {
            folder.deleteLastPathComponent()
        }
        return folder.appendingPathComponent("Fixtures/weights/\(name)").path
    }

    /// A safetensors file: header length, header JSON, data.
    private func safetensors(_ header: String, data: [UInt8] = []) -> [UInt8] {
        let json = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json + data
    }

    private func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3search-weights-\(UUID().uuidString)")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    /// The ModelError loading `path` throws (nil, and a failure, when it loads).
    private func loadError(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> ModelError? {
        do {
            _ = try WeightFile.load(path)
            XCTFail("\(path) loaded, expected an error", file: file, line: line)
            return nil
        } catch let error as ModelError {
            return error
        } catch {
            XCTFail("\(path): not a ModelError: \(error)", file: file, line: line)
            return nil
        }
    }
}
