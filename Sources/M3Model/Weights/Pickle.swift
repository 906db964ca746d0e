// A restricted unpickler for torch state dicts. It interprets the pickle as data only:
// nothing is imported, called or executed. Globals resolve to a fixed whitelist of the
// few constructors a state dict uses, and REDUCE on those builds plain values.
//
// What torch.save writes for {"w": tensor} (protocol 2, see pickletools.dis):
//   GLOBAL 'collections OrderedDict'  EMPTY_TUPLE  REDUCE            → the state dict
//   MARK  'w'  GLOBAL 'torch._utils _rebuild_tensor_v2'
//         MARK  (MARK 'storage' GLOBAL 'torch FloatStorage' '0' 'cpu' 6 TUPLE) BINPERSID
//               0 (2, 3) (3, 1) False (OrderedDict) TUPLE  REDUCE    → the tensor
//   SETITEMS  [EMPTY_DICT … BUILD: the OrderedDict's `_metadata` attribute, ignored]  STOP
// BINPERSID's tuple is ('storage', storage type, key, location, numel); the storage's
// bytes are the archive entry data/<key>. _rebuild_tensor_v2(storage, storage_offset,
// size, stride, requires_grad, backward_hooks[, metadata]) makes a view of it.
//
// Opcodes: those of protocol 2 a state dict needs, plus the protocol 4 framing, memo and
// string opcodes. Sizes are bounded (marks, tuple nesting, stack, memo) so a hostile file
// fails with an error instead of exhausting memory or the call stack.

/// A storage named by a persistent id: the archive entry data/<key>.
struct StorageRecord {
    enum DType {
        case float(StoredDType)
        /// A dtype we do not load (int64 buffers, …), by name for the error.
        case other(String)
    }
    let key: String
    let dtype: DType
}

/// A tensor as _rebuild_tensor_v2 describes it: a strided view of a storage, in elements.
struct TensorRecord {
    let storage: StorageRecord
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

enum Unpickler {
    static let maxMarks = 256
    static let maxDepth = 256
    static let maxStack = 1 << 20
    static let maxMemo = 1 << 20

    /// The (name, tensor) entries of the pickled top-level dict, in file order. Entries
    /// whose key is not a string or whose value is not a tensor are skipped.
    static func stateDict(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [(name: String, tensor: TensorRecord)] {
        let machine = Machine(bytes, path: path)
        // Lists and dicts are shared boxes, and a pickle can make them contain themselves;
        // emptying every box at the end breaks such cycles (and deep chains) without recursion.
        defer { for box in machine.boxes { box.clear() } }

        let result = try machine.run()
        guard case .dict(let dict) = result else {
            throw ModelError.invalidFormat(path: path, detail: "the pickle holds \(result.kind), not a dict of tensors")
        }
        return dict.pairs.compactMap { item in
            guard case .string(let name) = item.key, case .tensor(let tensor) = item.value else { return nil }
            return (name, tensor)
        }
    }
}

// MARK: - Values

private enum Value {
    case none, bool(Bool), int(Int), float(Double), string(String)
    case tuple([Value], depth: Int)
    case list(Box), dict(Box)
    case global(Global)
    case storage(StorageRecord)
    case tensor(TensorRecord)

    var kind: String {
        switch self {
        case .none: "None"
        case .bool: "a bool"
        case .int: "an int"
        case .float: "a float"
        case .string: "a string"
        case .tuple: "a tuple"
        case .list: "a list"
        case .dict: "a dict"
        case .global(let g): "the global \(g.name)"
        case .storage: "a storage"
        case .tensor: "a tensor"
        }
    }

    /// Tuple nesting; every other value counts as flat.
    var depth: Int {
        if case .tuple(_, let depth) = self { return depth }
        return 0
    }
}

/// A list (`items`) or dict (`pairs`, in insertion order): pickles fill these after
/// creating and memoizing them, so they are shared references.
private final class Box {
    var items: [Value] = []
    var pairs: [(key: Value, value: Value)] = []
    func clear() { items = []; pairs = [] }
}

/// The only globals a pickle may name.
private enum Global {
    case orderedDict
    case rebuildTensor, rebuildTensorV2
    case rebuildParameter, rebuildParameterWithState
    case storageType(StorageRecord.DType, name: String)

    static let whitelist: [String: Global] = {
        var table: [String: Global] = [
            "collections.OrderedDict": .orderedDict,
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
        ]
        // Storage types are only tags naming a dtype; the non-float ones load as "unsupported".
        let storages: [(String, StorageRecord.DType)] = [
            ("FloatStorage", .float(.float32)), ("HalfStorage", .float(.float16)), ("BFloat16Storage", .float(.bfloat16)),
            ("DoubleStorage", .other("float64")), ("LongStorage", .other("int64")), ("IntStorage", .other("int32")),
            ("ShortStorage", .other("int16")), ("CharStorage", .other("int8")), ("ByteStorage", .other("uint8")),
            ("BoolStorage", .other("bool")),
        ]
        for (name, dtype) in storages { table["torch." + name] = .storageType(dtype, name: "torch." + name) }
        return table
    }()

    var name: String {
        switch self {
        case .orderedDict: "collections.OrderedDict"
        case .rebuildTensor: "torch._utils._rebuild_tensor"
        case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
        case .rebuildParameter: "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
        case .storageType(_, let name): name
        }
    }
}

// MARK: - The machine

private final class Machine {
    private let bytes: UnsafeRawBufferPointer
    private let path: String
    private var position = 0
    private var opcodeStart = 0
    private var stack: [Value] = []
    private var marks: [Int] = []  // stack heights at each MARK
    private var memo: [Int: Value] = [:]
    private(set) var boxes: [Box] = []

    init(_ bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    func run() throws -> Value {
        while true {
            opcodeStart = position
            let op = try byte()
            switch op {
            case 0x80: // PROTO
                let version = try byte()
                guard version >= 2, version <= 5 else { throw invalid("unsupported pickle protocol \(version)") }
            case 0x95: _ = try integer(UInt64.self)  // FRAME: a read-ahead hint only
            case 0x2E: return try pop()              // STOP

            // Constants
            case 0x4E: try push(.none)               // NONE
            case 0x88: try push(.bool(true))         // NEWTRUE
            case 0x89: try push(.bool(false))        // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(bitPattern: try integer(UInt32.self)))))  // BININT
            case 0x4B: try push(.int(Int(try byte())))                                    // BININT1
            case 0x4D: try push(.int(Int(try integer(UInt16.self))))                      // BININT2
            case 0x8A: try push(.int(try long1()))                                        // LONG1
            case 0x47: // BINFLOAT: big-endian IEEE double
                let bits = try integer(UInt64.self).byteSwapped
                try push(.float(Double(bitPattern: bits)))
            case 0x58: try push(.string(try string(length: Int(try integer(UInt32.self)))))  // BINUNICODE
            case 0x8C: try push(.string(try string(length: Int(try byte()))))                // SHORT_BINUNICODE
            case 0x8D: // BINUNICODE8
                let length = try integer(UInt64.self)
                guard length <= UInt64(bytes.count) else { throw invalid("string length \(length) exceeds the pickle") }
                try push(.string(try string(length: Int(length))))
            case 0x54: // BINSTRING (Python 2 str; ASCII names in practice)
                let length = Int(Int32(bitPattern: try integer(UInt32.self)))
                try push(.string(try string(length: length)))
            case 0x55: try push(.string(try string(length: Int(try byte()))))  // SHORT_BINSTRING

            // Containers
            case 0x28: // MARK
                guard marks.count < Unpickler.maxMarks else { throw unsafe("marks nested deeper than \(Unpickler.maxMarks)") }
                marks.append(stack.count)
            case 0x29: try push(.tuple([], depth: 1))      // EMPTY_TUPLE
            case 0x74: try push(tuple(try popMark()))      // TUPLE
            case 0x85: try push(tuple(try pop(1)))         // TUPLE1
            case 0x86: try push(tuple(try pop(2)))         // TUPLE2
            case 0x87: try push(tuple(try pop(3)))         // TUPLE3
            case 0x5D: try push(.list(newBox()))           // EMPTY_LIST
            case 0x6C: // LIST
                let box = newBox()
                box.items = try popMark()
                try push(.list(box))
            case 0x61: try list().items.append(try pop())          // APPEND
            case 0x65: let items = try popMark(); try list().items += items  // APPENDS
            case 0x7D: try push(.dict(newBox()))                   // EMPTY_DICT
            case 0x64: // DICT
                let box = newBox()
                box.pairs = try pairs(try popMark())
                try push(.dict(box))
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                try dict().pairs.append((key, value))
            case 0x75: let items = try pairs(try popMark()); try dict().pairs += items  // SETITEMS

            // Memo
            case 0x71: try put(Int(try byte()))                    // BINPUT
            case 0x72: try put(Int(try integer(UInt32.self)))      // LONG_BINPUT
            case 0x94: try put(memo.count)                         // MEMOIZE
            case 0x68: try get(Int(try byte()))                    // BINGET
            case 0x6A: try get(Int(try integer(UInt32.self)))      // LONG_BINGET

            // Objects: only whitelisted globals, applied as data constructors.
            case 0x63: // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                try push(.global(try resolve(module, name)))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw invalid("STACK_GLOBAL needs two strings")
                }
                try push(.global(try resolve(m, n)))
            case 0x52: // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .global(let global) = callable else { throw unsafe("REDUCE calls \(callable.kind)") }
                guard case .tuple(let items, _) = arguments else { throw invalid("REDUCE arguments are \(arguments.kind), not a tuple") }
                try push(try apply(global, items))
            case 0x62: // BUILD: only the OrderedDict `_metadata` attribute, which we do not need
                let state = try pop()
                guard let target = stack.last else { throw invalid("BUILD on an empty stack") }
                guard case .dict = target else { throw unsafe("BUILD sets the state of \(target.kind) from \(state.kind)") }
            case 0x51: try push(.storage(try storage(try pop())))  // BINPERSID

            default:
                let printable = (0x21...0x7E).contains(op) ? " ('\(Character(Unicode.Scalar(op)))')" : ""
                throw unsafe("unsupported pickle opcode 0x\(String(op, radix: 16))\(printable)")
            }
        }
    }

    // MARK: Reading

    private func byte() throws -> UInt8 {
        try integer(UInt8.self)
    }

    private func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
        guard let value = bytes.readLE(T.self, at: position) else { throw invalid("the pickle ends in the middle of an opcode") }
        position += MemoryLayout<T>.size
        return value
    }

    /// LONG1: a little-endian two's-complement integer of n ≤ 8 bytes.
    private func long1() throws -> Int {
        let length = Int(try byte())
        guard length <= 8 else { throw invalid("integer of \(length) bytes is too large") }
        guard let raw = bytes.slice(position, length) else { throw invalid("the pickle ends in the middle of an integer") }
        position += length
        var value: UInt64 = 0
        for (i, b) in raw.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
        if length > 0, length < 8, raw[length - 1] & 0x80 != 0 {
            value |= ~0 << (8 * UInt64(length))  // sign-extend
        }
        return Int(Int64(bitPattern: value))
    }

    private func string(length: Int) throws -> String {
        guard length >= 0, let raw = bytes.slice(position, length) else { throw invalid("a string runs past the end of the pickle") }
        position += length
        guard let text = String(validating: raw, as: UTF8.self) else { throw invalid("a string is not valid UTF-8") }
        return text
    }

    /// A newline-terminated ASCII line (GLOBAL's operands).
    private func line() throws -> String {
        var end = position
        while end < bytes.count, bytes[end] != UInt8(ascii: "\n") {
            guard end - position < 256, bytes[end] < 0x80 else { throw invalid("GLOBAL operand is not a short ASCII line") }
            end += 1
        }
        guard end < bytes.count else { throw invalid("the pickle ends in the middle of a GLOBAL") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
        position = end + 1
        return text
    }

    // MARK: Stack

    private func push(_ value: Value) throws {
        guard stack.count < Unpickler.maxStack else { throw unsafe("more than \(Unpickler.maxStack) values on the stack") }
        stack.append(value)
    }

    private func pop() throws -> Value {
        guard stack.count > (marks.last ?? 0), let value = stack.popLast() else { throw invalid("stack underflow") }
        return value
    }

    private func pop(_ count: Int) throws -> [Value] {
        guard stack.count - (marks.last ?? 0) >= count else { throw invalid("stack underflow") }
        defer { stack.removeLast(count) }
        return Array(stack.suffix(count))
    }

    /// Everything above the most recent MARK, which is removed.
    private func popMark() throws -> [Value] {
        guard let mark = marks.popLast() else { throw invalid("no MARK to pop to") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private func tuple(_ items: [Value]) throws -> Value {
        let depth = 1 + (items.map(\.depth).max() ?? 0)
        guard depth <= Unpickler.maxDepth else { throw unsafe("tuples nested deeper than \(Unpickler.maxDepth)") }
        return .tuple(items, depth: depth)
    }

    private func newBox() -> Box {
        let box = Box()
        boxes.append(box)
        return box
    }

    private func list() throws -> Box {
        guard case .list(let box) = stack.last else { throw invalid("APPEND to \(stack.last?.kind ?? "nothing"), not a list") }
        return box
    }

    private func dict() throws -> Box {
        guard case .dict(let box) = stack.last else { throw invalid("SETITEM on \(stack.last?.kind ?? "nothing"), not a dict") }
        return box
    }

    private func pairs(_ items: [Value]) throws -> [(key: Value, value: Value)] {
        guard items.count % 2 == 0 else { throw invalid("a dict needs key-value pairs, got \(items.count) values") }
        return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
    }

    private func put(_ index: Int) throws {
        guard let top = stack.last else { throw invalid("memoizing an empty stack") }
        guard memo[index] != nil || memo.count < Unpickler.maxMemo else { throw unsafe("more than \(Unpickler.maxMemo) memo entries") }
        memo[index] = top
    }

    private func get(_ index: Int) throws {
        guard let value = memo[index] else { throw invalid("memo entry \(index) is read before it is written") }
        try push(value)
    }

    // MARK: Globals

    private func resolve(_ module: String, _ name: String) throws -> Global {
        guard let global = Global.whitelist[module + "." + name] else {
            throw unsafe("the pickle references \(module).\(name), which is not part of a tensor state dict")
        }
        return global
    }

    private func apply(_ global: Global, _ arguments: [Value]) throws -> Value {
        switch global {
        case .orderedDict:
            guard arguments.isEmpty else { throw invalid("OrderedDict is called with \(arguments.count) arguments") }
            return .dict(newBox())
        case .rebuildTensorV2 where (6...7).contains(arguments.count), .rebuildTensor where arguments.count == 4:
            return .tensor(try tensor(arguments))
        case .rebuildParameter where arguments.count == 3, .rebuildParameterWithState where arguments.count == 4:
            guard case .tensor = arguments[0] else { throw invalid("\(global.name) wraps \(arguments[0].kind), not a tensor") }
            return arguments[0]  // nn.Parameter(t): the same data
        case .storageType:
            throw unsafe("the pickle calls \(global.name)")
        default:
            throw invalid("\(global.name) is called with \(arguments.count) arguments")
        }
    }

    /// _rebuild_tensor(_v2)'s (storage, storage_offset, size, stride, …); later arguments
    /// (requires_grad, backward hooks, metadata) do not affect the data.
    private func tensor(_ arguments: [Value]) throws -> TensorRecord {
        guard case .storage(let storage) = arguments[0], case .int(let offset) = arguments[1],
              let shape = ints(arguments[2]), let strides = ints(arguments[3]), shape.count == strides.count else {
            throw invalid("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride)")
        }
        return TensorRecord(storage: storage, offset: offset, shape: shape, strides: strides)
    }

    private func ints(_ value: Value) -> [Int]? {
        guard case .tuple(let items, _) = value else { return nil }
        var result: [Int] = []
        for item in items {
            guard case .int(let v) = item else { return nil }
            result.append(v)
        }
        return result
    }

    /// ('storage', storage type, key, location, numel).
    private func storage(_ id: Value) throws -> StorageRecord {
        guard case .tuple(let items, _) = id, items.count == 5, case .string("storage") = items[0],
              case .global(.storageType(let dtype, _)) = items[1], case .string(let key) = items[2] else {
            throw invalid("persistent id \(id.kind) is not a torch storage reference")
        }
        // Keys are small decimal numbers; anything else could not name an archive entry.
        let plain = key.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x5F }
        guard plain, !key.isEmpty, key.utf8.count <= 64 else {
            throw invalid("storage key '\(key)' is not a plain name")
        }
        return StorageRecord(key: key, dtype: dtype)
    }

    // MARK: Errors

    private func invalid(_ detail: String) -> ModelError {
        .invalidFormat(path: path, detail: "data.pkl, byte \(opcodeStart): \(detail)")
    }

    private func unsafe(_ detail: String) -> ModelError {
        .unsafePickle(path: path, detail: "data.pkl, byte \(opcodeStart): \(detail)")
    }
}
