// A whole file mapped read-only into memory.
//
// Weight files are large (2.3 GB for BGE-M3 in float32), so they are never read into
// buffers: tensors point straight into the mapping. Each such Tensor holds a strong
// reference to its MappedFile, and the mapping lives until the last one is gone.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("The weight loaders read little-endian float32 in place; big-endian hosts are not supported.")
#endif

final class MappedFile: @unchecked Sendable {  // immutable after init
    let path: String
    /// The file's bytes; an empty buffer (no mapping) for an empty file.
    let bytes: UnsafeRawBufferPointer

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR {
                throw ModelError.missingFile(path: path, hint: "no such file; check the path or download the model again")
            }
            throw ModelError.invalidFormat(path: path, detail: "cannot open: \(Self.describe(code))")
        }
        // The mapping stays valid after close.
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ModelError.invalidFormat(path: path, detail: "cannot stat: \(Self.describe(errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelError.invalidFormat(path: path, detail: "not a regular file")
        }
        let size = Int(info.st_size)
        // mmap rejects length 0, and there is nothing to map anyway.
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw ModelError.invalidFormat(path: path, detail: "cannot memory-map \(size) bytes: \(Self.describe(errno))")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
        // Every weight is read soon (converted now, or by the first forward pass): start
        // the kernel's read-ahead of the whole file instead of faulting it in page by page.
        _ = madvise(address, size, MADV_WILLNEED)
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    private static func describe(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

extension UnsafeRawBufferPointer {
    /// The little-endian integer at `offset`, or nil when it would read outside the buffer.
    func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset <= count - MemoryLayout<T>.size else { return nil }
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// `length` bytes from `offset`, or nil when the range is not inside the buffer.
    func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        guard let base = baseAddress else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }
}
