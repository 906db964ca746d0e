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

    /// Runs `body` on the bytes with the mapping alive until it returns. Reading `bytes`
    /// does not keep `self` alive: an optimised build may release the last reference, and
    /// unmap the file, right after loading the pointer (a release build crashed so, hashing
    /// a head file whose tensors had already been copied).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
    }

    /// (device, inode, size, mtime, ctime) of the mapped file, for the identity cache.
    let stamp: FileStamp

    /// Maps `path`, which must be a regular file (a FIFO or device is refused unread).
    /// `adviseWillNeed` starts reading the whole file ahead (weights: every byte is used).
    init(path: String, adviseWillNeed: Bool = true) throws {
        self.path = path
        let (fd, info) = try ModelFiles.open(path)
        // The mapping stays valid after close.
        defer { close(fd) }
        stamp = FileStamp(info)
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
        if adviseWillNeed { _ = madvise(address, size, MADV_WILLNEED) }
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

/// What identifies one version of a file without reading it: if any field changed, the
/// contents may have. ctime moves on every write and on `touch -d`, which sets mtime back.
struct FileStamp: Equatable, Sendable {
    var device: UInt64, inode: UInt64, size: Int64, mtimeNanoseconds: Int64, ctimeNanoseconds: Int64

    init(device: UInt64, inode: UInt64, size: Int64, mtimeNanoseconds: Int64, ctimeNanoseconds: Int64) {
        (self.device, self.inode, self.size) = (device, inode, size)
        (self.mtimeNanoseconds, self.ctimeNanoseconds) = (mtimeNanoseconds, ctimeNanoseconds)
    }

    init(_ info: stat) {
        #if canImport(Darwin)
        let (m, c) = (info.st_mtimespec, info.st_ctimespec)
        #else
        let (m, c) = (info.st_mtim, info.st_ctim)
        #endif
        self.init(device: UInt64(truncatingIfNeeded: info.st_dev), inode: UInt64(truncatingIfNeeded: info.st_ino),
                  size: Int64(info.st_size),
                  mtimeNanoseconds: Int64(m.tv_sec) &* 1_000_000_000 &+ Int64(m.tv_nsec),
                  ctimeNanoseconds: Int64(c.tv_sec) &* 1_000_000_000 &+ Int64(c.tv_nsec))
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
