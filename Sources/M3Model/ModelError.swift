import Foundation

/// Everything that can go wrong while finding, reading or running a model.
///
/// Each case names the file (and the tensor, where there is one); `description`
/// says what happened and what to do about it.
public enum ModelError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No model folder was found in any of the places searched.
    case modelNotFound(searched: [String])
    /// A file the model needs is absent from the folder.
    case missingFile(path: String, hint: String)
    /// config.json is unreadable or describes a model we do not run.
    case invalidConfig(path: String, detail: String)
    /// The file ends before the data its header promises.
    case truncated(path: String, detail: String)
    /// The bytes are not in the format the file claims.
    case invalidFormat(path: String, detail: String)
    /// A pickle asks for something outside the tensor state-dict subset.
    case unsafePickle(path: String, detail: String)
    /// A tensor the model needs is not in the file.
    case missingTensor(path: String, name: String)
    /// A tensor has a shape other than config.json implies.
    case shapeMismatch(path: String, name: String, expected: [Int], actual: [Int])
    /// A tensor is stored in a dtype we cannot convert to float32.
    case unsupportedDType(path: String, name: String, dtype: String)
    /// Input the encoder cannot take.
    case invalidInput(String)

    public var description: String {
        switch self {
        case .modelNotFound(let searched):
            return "No BGE-M3 model found (looked in: \(searched.joined(separator: ", "))). "
                + "Download it with `huggingface-cli download BAAI/bge-m3` (or `git clone https://huggingface.co/BAAI/bge-m3`) "
                + "and pass its folder, or set M3SEARCH_MODEL=DIR."
        case .missingFile(let path, let hint):
            return "Missing model file \(path): \(hint)"
        case .invalidConfig(let path, let detail):
            return "Invalid model config \(path): \(detail)"
        case .truncated(let path, let detail):
            return "Truncated file \(path): \(detail). Download it again."
        case .invalidFormat(let path, let detail):
            return "Unreadable weight file \(path): \(detail)"
        case .unsafePickle(let path, let detail):
            return "Refusing to load \(path): \(detail). Only tensor state dicts are accepted; nothing in the file was executed."
        case .missingTensor(let path, let name):
            return "Tensor '\(name)' is missing from \(path)."
        case .shapeMismatch(let path, let name, let expected, let actual):
            return "Tensor '\(name)' in \(path) has shape \(actual), expected \(expected) from config.json."
        case .unsupportedDType(let path, let name, let dtype):
            return "Tensor '\(name)' in \(path) has dtype \(dtype); only float32, float16 and bfloat16 are supported."
        case .invalidInput(let detail):
            return "Invalid input: \(detail)"
        }
    }
}
