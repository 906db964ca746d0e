// Any bytes as an index file: opening must succeed or throw a StoreError; an opened index
// must be checkable and searchable without a crash.
import Foundation
import M3Search

let modelFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../../Fixtures/models/tiny-safetensors").standardizedFileURL.path
let model: BGEM3 = {
    do { return try BGEM3(folder: modelFolder) } catch { fatalError("the fuzzer's model did not load: \(error)") }
}()
nonisolated(unsafe) let scratch = "/dev/shm/m3fuzz-index-\(getpid()).m3index"

/// Loads the model before the first input, so its load time is not charged to that input
/// (libFuzzer's -timeout would report it as a hang).
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutableRawPointer) -> CInt {
    _ = model.identity
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    for suffix in ["", "-wal", "-shm", ".lock"] { unlink(scratch + suffix) }
    guard FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size)) else { return 0 }
    // The schema check `m3search check` runs first, and its repair (issue 16, item 6).
    if let schema = try? SearchIndex.inspectSchema(at: scratch), !schema.foreign.isEmpty {
        _ = try? SearchIndex.removeForeignSchemaObjects(at: scratch)
    }
    if let index = try? SearchIndex(path: scratch, model: model, options: .existing(readOnly: true)) {
        _ = try? index.check()
        _ = try? index.search("python context manager", options: SearchOptions(k: 3))
    }
    return 0
}
