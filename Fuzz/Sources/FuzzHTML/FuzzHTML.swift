// Any bytes as an HTML page (decoded as the indexer does): extraction must terminate and
// produce text no longer than the input in scalars plus one line break per tag.
@testable import M3Search
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let (text, _) = DocumentReader.decodeUTF8(Data(bytes: data, count: size))
    let out = HTMLText.extract(text)
    // Character references shrink, tags vanish or become one newline: never more scalars out than in.
    if out.unicodeScalars.count > text.unicodeScalars.count + 1 { fatalError("HTML text grew: \(text.unicodeScalars.count) → \(out.unicodeScalars.count)") }
    return 0
}
