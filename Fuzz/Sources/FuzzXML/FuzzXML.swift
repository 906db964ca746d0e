// Any bytes as XML: the scanner must balance every start with an end, never nest deeper
// than its limit, and throw only DocumentError.
@testable import M3Documents

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var depth = 0
    do {
        try XMLScanner.scan(bytes) { event in
            switch event {
            case .start: depth += 1
            case .end: depth -= 1
            case .text: break
            }
            if depth < 0 || depth > XMLScanner.maxDepth { fatalError("depth \(depth)") }
        }
        if depth != 0 { fatalError("unbalanced: \(depth) elements left open") }
    } catch is DocumentError {
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}
