// torch.save's zip checkpoint format (torch ≥ 1.6), read in place.
//
// Layout: a zip archive of stored entries, each entry's data 64-byte aligned, under one
// top-level folder <archive> (torch names it after the file, e.g. "archive", "pytorch_model"):
//   <archive>/data.pkl        the pickled state dict (protocol 2); tensors name storages by key
//   <archive>/data/<key>      one storage's raw bytes, little-endian, row-major
//   <archive>/byteorder       "little" or "big" (absent before torch 1.10: little)
//   <archive>/version, .format_version, .storage_alignment, .data/serialization_id: unused
// A tensor is a strided view of a storage: element i of the view is storage element
// offset + Σ index_d · stride_d. Contiguous float32 views point into the map; the rest
// are converted (float16 / bfloat16) or gathered (other strides) into owned memory.

enum PyTorchCheckpoint {
    static func load(_ file: MappedFile) throws -> StateDict {
        let path = file.path
        func invalid(_ detail: String) -> ModelError { .invalidFormat(path: path, detail: detail) }

        let archive = try ZipArchive(file.bytes, path: path)
        let pickles = archive.entries.keys.filter {
            $0.hasSuffix("/data.pkl") && $0.split(separator: "/", omittingEmptySubsequences: false).count == 2
        }
        guard pickles.count == 1, let pickleName = pickles.first else {
            throw invalid(pickles.isEmpty ? "the zip archive has no <name>/data.pkl: it is not a torch.save checkpoint"
                                          : "the zip archive has \(pickles.count) data.pkl entries")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        if let order = archive.entries[prefix + "byteorder"] {
            let text = file.bytes.slice(order.offset, min(order.size, 16)).map { String(decoding: $0, as: UTF8.self) }
            guard text == "little", order.size == 6 else {
                throw invalid("the checkpoint was saved with byte order '\(text ?? "?")'; only little-endian is supported")
            }
        }
        guard let pickleEntry = archive.entries[pickleName], let pickle = file.bytes.slice(pickleEntry.offset, pickleEntry.size) else {
            throw invalid("data.pkl lies outside the file")
        }

        var tensors: [String: Tensor] = [:]
        var unsupported: [String: String] = [:]
        for (name, record) in try Unpickler.stateDict(pickle, path: path) {
            // A repeated key keeps the last value, as in Python.
            tensors[name] = nil
            unsupported[name] = nil
            switch record.storage.dtype {
            case .other(let dtype):
                unsupported[name] = dtype
            case .float(let dtype):
                tensors[name] = try tensor(name, record, dtype, archive: archive, prefix: prefix, file: file)
            }
        }
        return StateDict(path: path, tensors: tensors, unsupported: unsupported)
    }

    private static func tensor(_ name: String, _ record: TensorRecord, _ dtype: StoredDType,
                               archive: ZipArchive, prefix: String, file: MappedFile) throws -> Tensor {
        let path = file.path
        func invalid(_ detail: String) -> ModelError { .invalidFormat(path: path, detail: "tensor '\(name)': " + detail) }

        let key = record.storage.key
        guard let entry = archive.entries[prefix + "data/" + key],
              let storage = file.bytes.slice(entry.offset, entry.size)?.baseAddress else {
            throw invalid("its storage data/\(key) is not in the archive")
        }
        let shape = record.shape, strides = record.strides
        guard record.offset >= 0, strides.allSatisfy({ $0 >= 0 }), let count = SafeTensors.elementCount(shape) else {
            throw invalid("invalid view: offset \(record.offset), size \(shape), stride \(strides)")
        }
        let capacity = entry.size / dtype.size  // elements in the storage
        if count == 0 {
            return Tensor.contiguous(shape: shape, count: 0, dtype: dtype, bytes: storage, file: file)
        }
        // The furthest element the view reads must lie inside the storage.
        var last = record.offset
        for (size, stride) in zip(shape, strides) {
            let (span, o1) = (size - 1).multipliedReportingOverflow(by: stride)
            let (sum, o2) = last.addingReportingOverflow(span)
            guard !o1, !o2 else { throw invalid("its view overflows") }
            last = sum
        }
        guard last < capacity else {
            throw invalid("the view (offset \(record.offset), size \(shape), stride \(strides)) reads element \(last) "
                + "of a \(capacity)-element storage")
        }
        let start = storage + record.offset * dtype.size
        if isRowMajor(shape, strides) {
            return Tensor.contiguous(shape: shape, count: count, dtype: dtype, bytes: start, file: file)
        }
        // Strides of 0 (expand) or overlapping rows can describe far more elements than the
        // storage holds; torch state dicts never need that, and gathering it could exhaust memory.
        guard count <= capacity else {
            throw invalid("its strided view has \(count) elements but its storage only \(capacity); re-save it with .contiguous()")
        }
        return Tensor.strided(shape: shape, count: count, strides: strides, dtype: dtype, bytes: start)
    }

    /// Row-major strides, ignoring dimensions of size 1 (whose stride torch leaves arbitrary).
    private static func isRowMajor(_ shape: [Int], _ strides: [Int]) -> Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() where size != 1 {
            if stride != expected { return false }
            expected *= size
        }
        return true
    }
}
