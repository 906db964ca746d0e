// Any bytes as a DOCX, ODT and EPUB (zip + XML): extraction must return text or throw
// DocumentError, within the per-file budget, never trap or hang.
@testable import M3Documents

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    for format in [DocumentFormat.docx, .odt, .epub] {
        do {
            let text = try DocumentText.extract(bytes, format: format, limits: ExtractionLimits(maxTextBytes: 1 << 20))
            if text.segments.isEmpty { fatalError("extract returned no segments without throwing") }
        } catch is DocumentError {
        } catch {
            fatalError("unexpected error type: \(error)")
        }
    }
    return 0
}
