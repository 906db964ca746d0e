// Float32 tensors over weight-file bytes.
//
// Layout: row-major (C order), `count` = product of `shape` (1 for a scalar, shape []).
// Storage is either
//   - the memory-mapped file itself, for little-endian float32 at a 4-byte-aligned offset
//     (zero copy: a 2.3 GB float32 checkpoint loads without copying a byte), or
//   - a buffer the tensor owns, filled by one conversion pass from float16 / bfloat16 at
//     the first use of `pointer` (the word-embedding table is read a row at a time through
//     `row(_:scratch:)` and never converted whole), by an unaligned copy, or by a strided
//     gather (non-contiguous torch tensors).

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A float32 tensor, row-major. Either points into a memory-mapped file (float32 stored
/// little-endian and 4-byte aligned: zero copy) or into memory it owns (converted from
/// float16/bfloat16, or copied when unaligned).
public struct Tensor: @unchecked Sendable {  // read-only after construction
    public let shape: [Int]
    private let elementCount: Int
    private let storage: Storage

    private enum Storage {
        /// float32 elements, kept valid by `owner` (a MappedFile or a FloatBuffer).
        case floats(UnsafePointer<Float>, owner: AnyObject)
        /// float16 / bfloat16 in the mapped file, converted at the first `pointer`.
        case deferred(DeferredConversion)
    }

    /// Number of elements (product of `shape`).
    public var count: Int { elementCount }

    /// The first element. Valid as long as this Tensor (or a copy, or the StateDict holding
    /// it) lives; wrap uses in `withExtendedLifetime` when nothing else keeps it alive.
    public var pointer: UnsafePointer<Float> {
        switch storage {
        case .floats(let base, _): base
        case .deferred(let d): d.converted
        }
    }

    /// Row `index` of a 2-D tensor as float32: in place, or converted into `scratch`
    /// (shape[1] floats) while the tensor has not been converted whole. The caller keeps the
    /// tensor alive and checks `index` < shape[0].
    func row(_ index: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let width = shape.count == 2 ? shape[1] : elementCount
        switch storage {
        case .floats(let base, _):
            return base + index * width
        case .deferred(let d):
            if let whole = d.convertedIfDone { return whole + index * width }
            Tensor.convert(d.bytes + index * width * d.dtype.size, d.dtype, count: width, into: scratch)
            return UnsafePointer(scratch)
        }
    }

    public func toArray() -> [Float] {
        withExtendedLifetime(self.storageOwner) { Array(UnsafeBufferPointer(start: pointer, count: elementCount)) }
    }

    private var storageOwner: AnyObject {
        switch storage {
        case .floats(_, let owner): owner
        case .deferred(let d): d
        }
    }

    /// Tells the kernel the tensor's pages of a memory-mapped file are no longer needed, so
    /// they leave the process's resident memory (after the weights were packed into another
    /// form). Safe: the mapping is private, read-only and never written, so the pages are
    /// clean and a later read faults them back in from the file. Owned (converted) buffers
    /// are left alone — advising away anonymous memory would zero it.
    func releaseMappedPages() {
        guard case .floats(let base, let owner) = storage, owner is MappedFile else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = UInt(bitPattern: base), end = start + UInt(elementCount * MemoryLayout<Float>.size)
        // Only whole pages inside the tensor: neighbours sharing an edge page stay resident.
        let first = (start + UInt(page) - 1) / UInt(page) * UInt(page), last = end / UInt(page) * UInt(page)
        guard last > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, Int(last - first), MADV_DONTNEED)
    }

    init(shape: [Int], count: Int, base: UnsafePointer<Float>, owner: AnyObject) {
        self.shape = shape
        self.elementCount = count
        self.storage = .floats(base, owner: owner)
    }

    private init(shape: [Int], count: Int, deferred: DeferredConversion) {
        self.shape = shape
        self.elementCount = count
        self.storage = .deferred(deferred)
    }
}

/// float16 / bfloat16 elements in a mapped file and, once asked for, their float32 copy
/// (made once, under the lock: layers are built on several threads).
final class DeferredConversion: @unchecked Sendable {  // `buffer` guarded by lock
    let bytes: UnsafeRawPointer
    let dtype: StoredDType
    let count: Int
    private let file: MappedFile  // keeps `bytes` mapped
    private let lock = NSLock()
    private var buffer: FloatBuffer?

    init(bytes: UnsafeRawPointer, dtype: StoredDType, count: Int, file: MappedFile) {
        self.bytes = bytes
        self.dtype = dtype
        self.count = count
        self.file = file
    }

    /// The float32 copy, made now if it does not exist yet.
    var converted: UnsafePointer<Float> {
        lock.lock()
        defer { lock.unlock() }
        if let buffer { return UnsafePointer(buffer.pointer) }
        let made = FloatBuffer(count: count)
        Tensor.convert(bytes, dtype, count: count, into: made.pointer)
        buffer = made
        return UnsafePointer(made.pointer)
    }

    /// The float32 copy if it exists.
    var convertedIfDone: UnsafePointer<Float>? {
        lock.lock()
        defer { lock.unlock() }
        return buffer.map { UnsafePointer($0.pointer) }
    }
}

/// How tensor elements are stored in a file.
enum StoredDType: Sendable {
    case float32, float16, bfloat16

    var size: Int {
        switch self {
        case .float32: 4
        case .float16, .bfloat16: 2
        }
    }
}

/// Float memory owned by converted tensors.
final class FloatBuffer: @unchecked Sendable {  // written once, before any Tensor shares it
    let pointer: UnsafeMutablePointer<Float>

    init(count: Int) {
        // At least one element, so even a 0-size tensor has a real, aligned pointer.
        pointer = .allocate(capacity: max(count, 1))
    }

    deinit { pointer.deallocate() }
}

extension Tensor {
    /// A tensor over `count` contiguous elements of `dtype` at `bytes` inside `file`.
    /// The caller has bounds-checked the `count * dtype.size` bytes.
    static func contiguous(shape: [Int], count: Int, dtype: StoredDType,
                           bytes: UnsafeRawPointer, file: MappedFile) -> Tensor {
        if dtype == .float32, UInt(bitPattern: bytes) % UInt(MemoryLayout<Float>.alignment) == 0 {
            return Tensor(shape: shape, count: count, base: bytes.assumingMemoryBound(to: Float.self), owner: file)
        }
        if dtype != .float32 {
            // Converted when first used: a table read by rows (the word embeddings) never is.
            return Tensor(shape: shape, count: count, deferred: DeferredConversion(bytes: bytes, dtype: dtype, count: count, file: file))
        }
        let buffer = FloatBuffer(count: count)
        convert(bytes, dtype, count: count, into: buffer.pointer)
        return Tensor(shape: shape, count: count, base: buffer.pointer, owner: buffer)
    }

    /// A tensor gathered element by element through `strides` (in elements) from `bytes`;
    /// the caller has bounds-checked the furthest element. Rare (torch views saved as is).
    static func strided(shape: [Int], count: Int, strides: [Int], dtype: StoredDType,
                        bytes: UnsafeRawPointer) -> Tensor {
        let buffer = FloatBuffer(count: count)
        var index = [Int](repeating: 0, count: shape.count)
        var source = 0  // element offset of `index`
        for i in 0..<count {
            convert(bytes + source * dtype.size, dtype, count: 1, into: buffer.pointer + i)
            // Odometer step over the multi-index, last dimension fastest.
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                source += strides[d]
                if index[d] < shape[d] { break }
                source -= strides[d] * index[d]
                index[d] = 0
                d -= 1
            }
        }
        return Tensor(shape: shape, count: count, base: buffer.pointer, owner: buffer)
    }

    /// One pass over `count` little-endian elements; `source` may be unaligned.
    /// (A vectorised C kernel can replace the loops without changing callers.)
    static func convert(_ source: UnsafeRawPointer, _ dtype: StoredDType, count: Int,
                        into destination: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            for i in 0..<count {
                destination[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        case .float16:
            for i in 0..<count {
                destination[i] = halfToFloat(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bfloat16:
            // bfloat16 is the top half of a float32.
            for i in 0..<count {
                destination[i] = Float(bitPattern: UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        }
    }
}

/// IEEE half → float, bit-exact with Float(Float16(bitPattern:)) (checked for all 65536
/// values by the tests) but branch-free integer work, so the loop vectorises (~7× faster
/// on x86-64 without F16C) and it also builds where Float16 does not exist (Intel Macs).
/// Normals: rebias the exponent (15 → 127). Subnormals: mantissa × 2^-24, computed from
/// normal floats so it holds even with denormals-are-zero set. Infinity / NaN: all-ones
/// exponent, NaNs quieted.
@inline(__always)
private func halfToFloat(_ bits: UInt16) -> Float {
    let magnitude = UInt32(bits & 0x7FFF) << 13
    let sign = UInt32(bits & 0x8000) << 16
    let normal = magnitude + 0x3800_0000  // (127 - 15) << 23
    let subnormal = (Float(bits & 0x3FF) * 0x1p-24).bitPattern
    let special = magnitude | 0x7F80_0000 | (magnitude > 0x0F80_0000 ? 0x0040_0000 : 0)
    let value = magnitude >= 0x0F80_0000 ? special : magnitude < 0x0080_0000 ? subnormal : normal
    return Float(bitPattern: sign | value)
}
