// safetensors (https://github.com/huggingface/safetensors), read in place.
//
// Layout:
//   [0, 8)         N: UInt64 little-endian, the header length
//   [8, 8 + N)     UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [d0, d1, …], "data_offsets": [begin, end]},
//                               …, "__metadata__": {"<key>": "<value>"}}   (may be padded with spaces)
//   [8 + N, EOF)   the data buffer; a tensor's row-major little-endian bytes are buffer[begin..<end]
//
// Validated before any tensor is made: sane N, well-formed entries, end - begin equal to
// product(shape) × dtype size, ranges inside the file and not overlapping.

enum SafeTensors {
    /// The reference implementation's limit; real headers are a few hundred KB at most.
    static let maxHeaderLength = 100_000_000

    /// Bytes per element of every dtype the format defines. Only F32/F16/BF16 are loaded;
    /// the others are still size-checked and reported when asked for.
    private static let dtypeSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
        "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    ]
    private static let loadable: [String: StoredDType] = ["F32": .float32, "F16": .float16, "BF16": .bfloat16]

    /// A header length followed by the start of a JSON object.
    static func looksLike(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count > 8 && bytes[8] == UInt8(ascii: "{")
    }

    static func load(_ file: MappedFile) throws -> StateDict {
        let path = file.path, bytes = file.bytes
        func invalid(_ detail: String) -> ModelError { .invalidFormat(path: path, detail: detail) }

        guard let declared = bytes.readLE(UInt64.self, at: 0) else {
            throw ModelError.truncated(path: path, detail: "the file has only \(bytes.count) bytes")
        }
        guard declared <= UInt64(maxHeaderLength) else {
            throw invalid("safetensors header length \(declared) exceeds the \(maxHeaderLength)-byte limit")
        }
        let headerLength = Int(declared)
        guard let header = bytes.slice(8, headerLength) else {
            throw ModelError.truncated(path: path, detail: "the safetensors header needs \(8 + headerLength) bytes but the file has \(bytes.count)")
        }
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart

        let entries = try parseHeader(header, invalid: invalid)

        var tensors: [String: Tensor] = [:]
        var unsupported: [String: String] = [:]
        var ranges: [(begin: Int, end: Int, name: String)] = []
        for (name, entry) in entries {
            let begin = entry.dataOffsets.begin, end = entry.dataOffsets.end
            guard begin >= 0, end >= begin else {
                throw invalid("tensor '\(name)' has invalid data_offsets [\(begin), \(end)]")
            }
            guard let count = elementCount(entry.shape) else {
                throw invalid("tensor '\(name)' has invalid shape \(entry.shape)")
            }
            if let size = dtypeSizes[entry.dtype] {
                let (byteLength, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow, byteLength == end - begin else {
                    throw invalid("tensor '\(name)' of shape \(entry.shape) and dtype \(entry.dtype) spans \(end - begin) bytes, expected \(overflow ? "more than Int.max" : String(byteLength))")
                }
            }
            guard end <= dataLength else {
                throw ModelError.truncated(path: path, detail: "tensor '\(name)' ends at byte \(dataStart + end) but the file has only \(bytes.count)")
            }
            ranges.append((begin, end, name))

            guard let dtype = loadable[entry.dtype] else {
                unsupported[name] = entry.dtype
                continue
            }
            // Never nil: [begin, end) was checked to lie inside the (non-empty) file.
            guard let data = bytes.slice(dataStart + begin, end - begin)?.baseAddress else { continue }
            tensors[name] = Tensor.contiguous(shape: entry.shape, count: count, dtype: dtype, bytes: data, file: file)
        }

        // Overlapping tensors would alias; a valid writer never produces them.
        ranges.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var previous: (end: Int, name: String)?
        for range in ranges where range.end > range.begin {
            if let previous, range.begin < previous.end {
                throw invalid("the data of tensors '\(previous.name)' and '\(range.name)' overlap")
            }
            previous = (range.end, range.name)
        }
        return StateDict(path: path, tensors: tensors, unsupported: unsupported)
    }

    /// product(shape), or nil for a negative dimension or an overflowing product.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            count = product
        }
        return count
    }

    private struct Entry {
        let dtype: String
        let shape: [Int]
        let dataOffsets: (begin: Int, end: Int)
    }

    /// Every entry but "__metadata__", in file order. A repeated name is an error (the
    /// strict parser refuses duplicate keys): which copy a reader keeps is undefined.
    private static func parseHeader(_ header: UnsafeRawBufferPointer, invalid: (String) -> ModelError) throws -> [(name: String, entry: Entry)] {
        let json: StrictJSON
        do { json = try StrictJSON.parse(header) } catch {
            throw invalid("the safetensors header is not valid JSON (\(error))")
        }
        guard case .object(let members) = json else {
            throw invalid("the safetensors header is not valid JSON of the expected form (\(json.kind), not an object)")
        }
        func ints(_ value: StrictJSON?, _ what: String, _ name: String) throws -> [Int] {
            guard case .array(let items)? = value else { throw invalid("tensor '\(name)' has a malformed header entry (\(what) is not a list)") }
            return try items.map {
                guard let v = $0.exactInt else { throw invalid("tensor '\(name)' has a malformed header entry (\(what) holds \($0.kind) that is not a whole number in range)") }
                return v
            }
        }
        var entries: [(name: String, entry: Entry)] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members where name != "__metadata__" {
            guard case .object = value else { throw invalid("tensor '\(name)' has a malformed header entry (\(value.kind), not an object)") }
            guard case .string(let dtype)? = value["dtype"] else { throw invalid("tensor '\(name)' has a malformed header entry (missing \"dtype\")") }
            let shape = try ints(value["shape"], "shape", name)
            let offsets = try ints(value["data_offsets"], "data_offsets", name)
            guard offsets.count == 2 else {
                throw invalid("tensor '\(name)' has \(offsets.count) data_offsets, expected 2")
            }
            entries.append((name, Entry(dtype: dtype, shape: shape, dataOffsets: (offsets[0], offsets[1]))))
        }
        return entries
    }
}
