// Any bytes as a weight file: WeightFile.load sniffs zip / safetensors / pickle and must
// either return tensors that lie inside the file or throw a ModelError, including the
// whole-file checks (zip CRC-32s, finite values).
import Foundation
import M3Model

nonisolated(unsafe) let scratch = "/dev/shm/m3fuzz-weights-\(getpid())"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size)) else { return 0 }
    if let dict = try? WeightFile.load(scratch, verify: true) {
        // Touch every loaded tensor's first and last element: a tensor pointing outside
        // the mapping would fault here (and ASan would name it).
        var sum: Float = 0
        for name in dict.names { if let t = dict[name], t.count > 0 { let a = t.toArray(); sum += a[0] + a[a.count - 1] } }
        _ = sum
    }
    return 0
}
