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
    /// A model file is a folder, FIFO, device or socket: it is refused unread (reading a
    /// FIFO would wait forever, a device could be endless).
    case notRegularFile(path: String, kind: String)
    /// A file that is read whole is larger than any genuine one.
    case fileTooLarge(path: String, size: Int64, limit: Int)
    /// A zip entry's bytes do not match the CRC-32 its central directory records.
    case checksumMismatch(path: String, entry: String)
    /// Tensors the file holds but config.json does not describe (e.g. more layers).
    case unexpectedTensors(path: String, names: [String], hint: String)
    /// A weight is NaN or infinite.
    case nonFiniteWeight(path: String, name: String, index: Int)
    /// The encoder produced NaN or infinity (weights too large for float32 arithmetic).
    case nonFiniteOutput(detail: String)

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
        case .notRegularFile(let path, let kind):
            return "Model file \(path) is \(kind), not a regular file; point it at the real file."
        case .fileTooLarge(let path, let size, let limit):
            return "Model file \(path) has \(size) bytes, more than the \(limit)-byte limit for this kind of file; it is not a genuine one."
        case .checksumMismatch(let path, let entry):
            return "Damaged weight file \(path): entry '\(entry)' does not match its CRC-32. Download it again."
        case .unexpectedTensors(let path, let names, let hint):
            let shown = names.prefix(5).map { "'\($0)'" }.joined(separator: ", ") + (names.count > 5 ? " and \(names.count - 5) more" : "")
            return "\(path) holds tensors config.json does not describe: \(shown); \(hint)"
        case .nonFiniteWeight(let path, let name, let index):
            return "Tensor '\(name)' in \(path) holds NaN or infinity (element \(index)); the weights are damaged. Download them again."
        case .nonFiniteOutput(let detail):
            return "The model produced NaN or infinity (\(detail)); its weights are damaged or too large for float32."
        }
    }
}
