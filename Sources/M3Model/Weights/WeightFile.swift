// Entry point: sniff a weight file's format from its first bytes and load its tensors.
//
//   "PK\x03\x04"…                    PyTorch zip checkpoint (torch.save, torch ≥ 1.6)
//   UInt64 N, then "{"…              safetensors
//   0x80 0x02 (pickle PROTO 2)…      legacy torch.save format: rejected, asks for a re-save

import Foundation

/// The tensors of one file by name, and the file they came from.
public struct StateDict: Sendable {
    public let path: String
    private let tensors: [String: Tensor]
    /// Tensors of dtypes we do not convert (e.g. an int64 `position_ids` buffer). They only
    /// fail when asked for, so a file that carries them still loads.
    private let unsupported: [String: String]

    /// Names asked for through `tensor(_:shape:)`, so that a loader can find the tensors
    /// nothing used (a config with fewer layers than the file).
    private let requested = RequestLog()

    init(path: String, tensors: [String: Tensor], unsupported: [String: String]) {
        self.path = path
        self.tensors = tensors
        self.unsupported = unsupported
    }

    /// The names of the float tensors, sorted.
    public var names: [String] { tensors.keys.sorted() }

    /// The float tensors, sorted by name.
    var sortedTensors: [(name: String, tensor: Tensor)] {
        tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Float tensors never asked for through `tensor(_:shape:)`, sorted.
    var unrequestedNames: [String] {
        let asked = requested.names
        return tensors.keys.filter { !asked.contains($0) }.sorted()
    }

    public subscript(name: String) -> Tensor? { tensors[name] }

    /// The tensor, checked against the expected shape; throws .missingTensor / .shapeMismatch naming file and tensor.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        requested.insert(name)
        guard let tensor = tensors[name] else {
            if let dtype = unsupported[name] {
                throw ModelError.unsupportedDType(path: path, name: name, dtype: dtype)
            }
            throw ModelError.missingTensor(path: path, name: name)
        }
        guard tensor.shape == shape else {
            throw ModelError.shapeMismatch(path: path, name: name, expected: shape, actual: tensor.shape)
        }
        return tensor
    }
}

/// The names a StateDict was asked for; layers are built on several threads at once.
private final class RequestLog: @unchecked Sendable {  // guarded by lock
    private let lock = NSLock()
    private var set = Set<String>()
    func insert(_ name: String) { lock.lock(); set.insert(name); lock.unlock() }
    var names: Set<String> { lock.lock(); defer { lock.unlock() }; return set }
}

public enum WeightFile {
    /// Reads model.safetensors, pytorch_model.bin or a head .pt file; the format is sniffed
    /// from the bytes, not the name. `verify` also checks what parsing alone cannot (every
    /// zip entry's CRC-32, every value finite) by reading the whole file; `BGEM3` does that
    /// once per version of a file and caches the result.
    public static func load(_ path: String, verify: Bool = false) throws -> StateDict {
        let file = try MappedFile(path: path)
        let dict = try load(file)
        if verify {
            try verifyChecksums(file)
            try dict.verifyFinite()
        }
        return dict
    }

    /// Parses the tensor directory of a mapped weight file; no whole-file checks.
    static func load(_ file: MappedFile) throws -> StateDict {
        let path = file.path
        let bytes = file.bytes
        if ZipArchive.looksLike(bytes) {
            return try PyTorchCheckpoint.load(file)
        }
        if SafeTensors.looksLike(bytes) {
            return try SafeTensors.load(file)
        }
        if bytes.count < 9 {
            throw ModelError.truncated(path: path, detail: "the file has only \(bytes.count) bytes")
        }
        // A bare pickle (PROTO 2...5): what torch.save wrote before its zip format.
        if bytes[0] == 0x80, (2...5).contains(bytes[1]) {
            throw ModelError.invalidFormat(path: path, detail: "this is the legacy (pre-1.6) torch.save format, which is not supported; "
                + "re-save it with torch.save (zip format): torch.save(torch.load(path), path), or convert it to safetensors")
        }
        let start = bytes.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        throw ModelError.invalidFormat(path: path, detail: "not a safetensors file or a PyTorch zip checkpoint (starts with bytes \(start))")
    }
}
