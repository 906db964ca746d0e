// Hostile model files beyond WeightLoadingTests' fixtures: memo and length fields that
// would allocate without bound, zip names that escape the archive, a deeply nested
// safetensors header, and a config.json that disagrees with the tensors. Each must be a
// clear ModelError, with nothing executed and memory bounded by the file's size.
import Foundation
@testable import M3Model
import M3TestSupport
import XCTest

final class HostileModelTests: XCTestCase {
    func unpickle(_ bytes: [UInt8]) throws -> [(name: String, tensor: TensorRecord)] {
        try bytes.withUnsafeBytes { try Unpickler.stateDict($0, path: "hostile.pkl") }
    }

    func pickleError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try unpickle(bytes)
            XCTFail("the pickle was accepted", file: file, line: line)
            return ""
        } catch let error as ModelError {
            return "\(error)"
        } catch {
            XCTFail("not a ModelError: \(error)", file: file, line: line)
            return ""
        }
    }

    func testHugeMemoIndicesAllocateNothing() throws {
        // EMPTY_DICT, LONG_BINPUT 0xFFFFFFFF, STOP: a sparse memo, an empty state dict.
        XCTAssertEqual(try unpickle([0x80, 0x02, 0x7D, 0x72, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]).count, 0)
        // LONG_BINGET of an index never stored.
        let message = pickleError([0x80, 0x02, 0x6A, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E])
        XCTAssertTrue(message.contains("memo"), message)
    }

    func testHugeDeclaredLengthsAreRefusedBeforeAllocating() {
        // BINUNICODE of 4 GiB − 1 bytes, BINUNICODE8 of 2^63, BINSTRING of −1, in a 12-byte pickle.
        for bytes: [UInt8] in [[0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x61, 0x2E],
                               [0x80, 0x02, 0x8D, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x2E],
                               [0x80, 0x02, 0x54, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]] {
            let message = pickleError(bytes)
            XCTAssertTrue(message.contains("past the end") || message.contains("exceeds"), message)
        }
    }

    func testSelfContainingAndLongChainsOfListsTerminate() {
        // A list appended to itself (via the memo), then used as the state dict.
        let cyclic: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E]
        XCTAssertTrue(pickleError(cyclic).contains("dict"), pickleError(cyclic))
        // 200,000 nested lists (EMPTY_LIST ×n, APPEND ×(n−1)): freeing them must not recurse.
        let n = 200_000
        let nested = [0x80, 0x02] + [UInt8](repeating: 0x5D, count: n) + [UInt8](repeating: 0x61, count: n - 1) + [0x2E]
        XCTAssertFalse(pickleError(nested).isEmpty)
    }

    func testOtherGlobalsAreNamedAndNeverCalled() {
        for (module, name) in [("os", "system"), ("builtins", "exec"), ("subprocess", "Popen"), ("torch", "load"),
                               ("collections", "defaultdict"), ("__builtin__", "getattr")] {
            // GLOBAL module\nname\n, SHORT_BINUNICODE "x", TUPLE1, REDUCE, STOP
            let bytes: [UInt8] = [0x80, 0x02, 0x63] + Array("\(module)\n\(name)\n".utf8) + [0x8C, 1, 0x78, 0x85, 0x52, 0x2E]
            let message = pickleError(bytes)
            XCTAssertTrue(message.contains("\(module).\(name)"), message)
        }
    }

    func testZipNamesThatEscapeTheArchiveAreRefused() throws {
        // The fixture's entry "archive/../../evil" renamed in place (same length) to other tricks.
        let original = try Data(contentsOf: URL(fileURLWithPath: weightsFixture("unsafe_name.pt")))
        let trick = Data("archive/../../evil".utf8)
        for replacement in ["/etc/cron.d/evil00", "archive\\..\\..\\evil", "archive/./././evil", "archive//evil/xxxx"] {
            XCTAssertEqual(replacement.utf8.count, trick.count)
            var bytes = original
            while let r = bytes.range(of: trick) { bytes.replaceSubrange(r, with: Data(replacement.utf8)) }
            let path = try temporaryFile(bytes)
            XCTAssertThrowsError(try WeightFile.load(path)) { error in
                XCTAssertTrue("\(error)".contains("unsafe entry name"), "\(replacement): \(error)")
            }
        }
    }

    func testZipDeclaringMoreEntriesThanItsDirectoryHoldsIsRefused() throws {
        // End-of-central-directory record with 65,534 entries in the directory of a small archive.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: weightsFixture("crafted_ok.pt")))
        let eocd = try XCTUnwrap(bytes.range(of: Data([0x50, 0x4B, 0x05, 0x06]), options: .backwards)).lowerBound
        bytes[eocd + 8] = 0xFE; bytes[eocd + 9] = 0xFF; bytes[eocd + 10] = 0xFE; bytes[eocd + 11] = 0xFF
        XCTAssertThrowsError(try WeightFile.load(try temporaryFile(bytes))) { error in
            XCTAssertTrue("\(error)".contains("entries cannot fit"), "\(error)")
        }
    }

    func testDeeplyNestedSafetensorsHeaderIsAnError() throws {
        let depth = 100_000
        let header = "{\"a\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        let json = Array(header.utf8)
        let bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json
        XCTAssertThrowsError(try WeightFile.load(try temporaryFile(Data(bytes)))) { error in
            XCTAssertTrue("\(error)".contains("not valid JSON") || "\(error)".contains("malformed"), "\(error)")
        }
    }

    /// A copy of the tiny model whose config.json says something the tensors do not.
    func testConfigDisagreeingWithTheTensorsNamesTheTensor() throws {
        let source = URL(fileURLWithPath: weightsFixture("../models/tiny-safetensors")).standardizedFileURL
        for (key, value, tensor) in [("hidden_size", 32, "embeddings.word_embeddings.weight"),
                                     ("intermediate_size", 48, "intermediate.dense.weight"),
                                     ("num_hidden_layers", 3, "encoder.layer.2."),
                                     ("vocab_size", 1000, "embeddings.word_embeddings.weight")] {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("m3-config-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            for name in try FileManager.default.contentsOfDirectory(atPath: source.path) {
                try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name),
                                                           withDestinationURL: source.appendingPathComponent(name).resolvingSymlinksInPath())
            }
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
            config[key] = value
            try FileManager.default.removeItem(at: folder.appendingPathComponent("config.json"))
            try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))
            XCTAssertThrowsError(try BGEM3(folder: folder.path)) { error in
                XCTAssertTrue("\(error)".contains(tensor), "\(key) = \(value): \(error)")
            }
        }
    }

    // MARK: Helpers

    /// A file under Fixtures/weights (and the test run's model cache installed: `TestModelCache`).
    func weightsFixture(_ name: String) -> String {
        TestModelCache.install()
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path), folder.path != "/" {
            folder.deleteLastPathComponent()
        }
        return folder.appendingPathComponent("Fixtures/weights/\(name)").path
    }

    func temporaryFile(_ bytes: Data) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("m3-hostile-\(UUID().uuidString)")
        try bytes.write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }
}
