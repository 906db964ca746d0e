// Any bytes as a PDF through poppler: text per page or a DocumentError, never a trap.
// (poppler's own C++ runs inside; a crash there is reported like one of ours.)
@testable import M3Documents

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let text = try DocumentText.extract(bytes, format: .pdf, limits: ExtractionLimits(maxTextBytes: 1 << 20))
        for s in text.segments where s.metadata["page"] == nil { fatalError("a PDF segment without a page") }
    } catch is DocumentError {
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}
