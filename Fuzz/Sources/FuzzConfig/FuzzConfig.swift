// Any bytes as config.json: parsing must return a config whose sizes are within the
// documented limits, or throw a ModelError; never trap on a number, recurse without bound
// or allocate by a size from the file.
@testable import M3Model

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let config = try? ModelConfig.parse(bytes, path: "fuzz/config.json") else { return 0 }
    for ((name, limit), value) in zip(ModelConfig.limits, [config.hiddenSize, config.layerCount, config.headCount,
                                                          config.intermediateSize, config.vocabularySize,
                                                          config.maxPositions, config.typeVocabularySize]) {
        if value < 1 || value > limit { fatalError("\(name) = \(value) accepted outside 1…\(limit)") }
    }
    if !(config.layerNormEps > 0 && config.layerNormEps.isFinite) { fatalError("layer_norm_eps \(config.layerNormEps) accepted") }
    return 0
}
