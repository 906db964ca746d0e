// Any bytes as data.pkl: the restricted unpickler must return a state dict or throw,
// never execute, never recurse or allocate without bound.
import Foundation
@testable import M3Model

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? Unpickler.stateDict(UnsafeRawBufferPointer(start: data, count: size), path: "fuzz.pkl")
    return 0
}
