// Any bytes as a tokenizer source: the first byte picks what the rest is.
//   even: a sentencepiece.bpe.model (libsentencepiece's parser, then our tables)
//   odd:  a cached tokenizer image (our validator; the model cache's files are untrusted)
// Loading must succeed or throw a TokenizerError; a loaded tokenizer must tokenize
// without reading out of bounds and give ids inside its vocabulary.
@testable import M3Tokenizer

nonisolated(unsafe) let texts = ["", " ", "hello world", "ﬁne café  北京\u{301}", "<s>x</s><mask>", String(repeating: "ab ", count: 40)]

/// 16-byte-aligned memory that lives as long as the tokenizer over it.
final class Image {
    let buffer: UnsafeMutableRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) {
        buffer = .allocate(byteCount: max(bytes.count, 1), alignment: 16)
        if let base = bytes.baseAddress { buffer.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
    }
    deinit { buffer.deallocate() }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let rest = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let tokenizer: XLMRobertaTokenizer?
    if data[0] & 1 == 0 {
        tokenizer = try? XLMRobertaTokenizer(model: Array(rest), modelPath: "fuzz.model", tokenizerJSON: nil, tokenizerJSONPath: nil)
    } else {
        let image = Image(rest)
        tokenizer = try? XLMRobertaTokenizer(image: UnsafeRawBufferPointer(start: image.buffer.baseAddress, count: rest.count), keepingAlive: image)
    }
    guard let tokenizer else { return 0 }
    for text in texts {
        let (ids, offsets) = tokenizer.encodeWithOffsets(text, maxLength: 64)
        if ids.count != offsets.count { fatalError("ids and offsets disagree") }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) { fatalError("id \(bad) outside \(tokenizer.vocabularySize)") }
    }
    // A model that loads must also round-trip through its image.
    if data[0] & 1 == 0 {
        let bytes = tokenizer.serializedImage()
        let image = bytes.withUnsafeBytes { Image($0) }
        let reloaded: XLMRobertaTokenizer
        do {
            reloaded = try XLMRobertaTokenizer(image: UnsafeRawBufferPointer(start: image.buffer.baseAddress, count: bytes.count), keepingAlive: image)
        } catch {
            fatalError("the image of a loaded tokenizer is refused: \(error)")
        }
        for text in texts where reloaded.encode(text, maxLength: 64) != tokenizer.encode(text, maxLength: 64) {
            fatalError("the image tokenizes \"\(text)\" differently")
        }
    }
    return 0
}
