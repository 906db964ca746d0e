// Opening and reading model files that may be hostile: only regular files, never more
// than a sane number of bytes. Shared with M3Model (config.json, weights, caches).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be opened or read.
package enum RegularFileError: Error, Equatable, Sendable {
    /// No such file (or a path component is not a folder).
    case missing
    /// A folder, FIFO, device or socket.
    case notRegular(kind: String)
    /// More bytes than the caller's limit.
    case tooLarge(size: Int64, limit: Int)
    /// open, fstat or read failed.
    case unreadable(String)

    package var message: String {
        switch self {
        case .missing: "no such file"
        case .notRegular(let kind): "it is \(kind), not a regular file"
        case .tooLarge(let size, let limit): "it has \(size) bytes, more than the \(limit)-byte limit for this file"
        case .unreadable(let why): why
        }
    }
}

package enum RegularFile {
    /// Opens `path` read-only if it is a regular file (symbolic links followed) and returns
    /// the descriptor with its fstat; the caller closes it.
    ///
    /// O_NONBLOCK makes open(2) of a FIFO return at once instead of waiting for a writer,
    /// so a FIFO, device, socket or folder is refused before anything is read from it.
    package static func open(_ path: String) throws(RegularFileError) -> (fd: Int32, info: stat) {
        let fd = systemOpen(path)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .missing }
            throw .unreadable("cannot open: \(String(cString: strerror(code)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .unreadable("cannot stat: \(String(cString: strerror(code)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .notRegular(kind: kind(info.st_mode))
        }
        // Regular files never block; reads behave as usual without the flag.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, info)
    }

    /// The whole file, refused before reading when it is not regular or has more than
    /// `limit` bytes; never reads more than the size fstat gave (a file growing meanwhile
    /// is cut there, a shrinking one returns what is left).
    package static func read(_ path: String, limit: Int) throws(RegularFileError) -> (bytes: [UInt8], info: stat) {
        let (fd, info) = try open(path)
        defer { close(fd) }
        return (try read(fd, info: info, limit: limit), info)
    }

    /// Reads the file open as `fd` (from `open`), bounded as above.
    package static func read(_ fd: Int32, info: stat, limit: Int) throws(RegularFileError) -> [UInt8] {
        guard info.st_size <= Int64(limit) else { throw .tooLarge(size: Int64(info.st_size), limit: limit) }
        let expected = Int(info.st_size)
        var bytes = [UInt8](repeating: 0, count: expected)
        var filled = 0
        var failure: Int32 = 0
        bytes.withUnsafeMutableBytes { buffer in
            while filled < expected {
                let n = systemRead(fd, buffer.baseAddress! + filled, expected - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 { return }
                filled += n
            }
        }
        if failure != 0 { throw .unreadable("cannot read: \(String(cString: strerror(failure)))") }
        if filled < expected { bytes.removeSubrange(filled...) }
        return bytes
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a folder"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
    }
}

// The C calls under other names: inside RegularFile, `open` and `read` are its own.
private func systemOpen(_ path: String) -> Int32 { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
