import Foundation

/// The sizes of an XLM-RoBERTa encoder, read from the model folder's config.json.
///
/// BAAI/bge-m3: hidden 1024, 24 layers, 16 heads, intermediate 4096, vocab 250002,
/// max positions 8194, layer_norm_eps 1e-5, pad id 1. Nothing here is hard-coded:
/// smaller test models use the same code.
public struct ModelConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var vocabularySize: Int
    public var maxPositions: Int
    public var typeVocabularySize: Int
    public var layerNormEps: Float
    public var padTokenID: Int

    public var headDim: Int { hiddenSize / headCount }
    /// Longest input the position table allows: RoBERTa positions start at pad id + 1.
    public var maxSequenceLength: Int { maxPositions - padTokenID - 1 }

    /// Parses config.json; throws `ModelError.invalidConfig` naming the field at fault.
    public static func load(_ path: String) throws -> ModelConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.missingFile(path: path, hint: "every Hugging Face model folder has a config.json")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.invalidConfig(path: path, detail: "not a JSON object")
        }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let v = json[key] as? Int { return v }
            if let v = json[key] as? Double, v == v.rounded() { return Int(v) }
            if json[key] == nil, let value { return value }
            throw ModelError.invalidConfig(path: path, detail: "missing or non-integer \"\(key)\"")
        }
        if let act = json["hidden_act"] as? String, act != "gelu" {
            throw ModelError.invalidConfig(path: path, detail: "hidden_act \"\(act)\" is not supported (BGE-M3 uses exact \"gelu\")")
        }
        if let pos = json["position_embedding_type"] as? String, pos != "absolute" {
            throw ModelError.invalidConfig(path: path, detail: "position_embedding_type \"\(pos)\" is not supported")
        }
        let eps = (json["layer_norm_eps"] as? Double) ?? 1e-5
        let config = ModelConfig(
            hiddenSize: try int("hidden_size"),
            layerCount: try int("num_hidden_layers"),
            headCount: try int("num_attention_heads"),
            intermediateSize: try int("intermediate_size"),
            vocabularySize: try int("vocab_size"),
            maxPositions: try int("max_position_embeddings"),
            typeVocabularySize: try int("type_vocab_size", default: 1),
            layerNormEps: Float(eps),
            padTokenID: try int("pad_token_id", default: 1))
        try config.validate(path: path)
        return config
    }

    func validate(path: String) throws {
        let positive = [("hidden_size", hiddenSize), ("num_hidden_layers", layerCount),
                        ("num_attention_heads", headCount), ("intermediate_size", intermediateSize),
                        ("vocab_size", vocabularySize), ("max_position_embeddings", maxPositions),
                        ("type_vocab_size", typeVocabularySize)]
        for (name, value) in positive where value <= 0 || value > 1 << 24 {
            throw ModelError.invalidConfig(path: path, detail: "\(name) = \(value) is out of range")
        }
        if hiddenSize % headCount != 0 {
            throw ModelError.invalidConfig(path: path, detail: "hidden_size \(hiddenSize) is not divisible by num_attention_heads \(headCount)")
        }
        if padTokenID < 0 || padTokenID + 2 >= maxPositions {
            throw ModelError.invalidConfig(path: path, detail: "pad_token_id \(padTokenID) leaves no positions")
        }
    }
}
