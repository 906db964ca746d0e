#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import M3Search

/// Where `export` writes its JSON Lines (issue 16, item 11), with every write, the fsync and
/// the close checked:
/// - no `--out`, or `-`: standard output;
/// - a FIFO: written through (never replaced);
/// - a new path or an existing regular file: written to a temporary file beside it, then
///   renamed over it, so the path only ever holds a complete export; on any error the
///   temporary file is removed and an existing file keeps its contents;
/// - anything else (a symbolic link, a device, a directory, a socket) is refused untouched.
final class ExportOutput {
    private let target: String?
    private let temporary: String?
    private var descriptor: Int32
    private var finished = false

    init(path: String?) throws {
        guard let path, path != "-" else {
            target = nil; temporary = nil; descriptor = STDOUT_FILENO
            return
        }
        target = path
        var info = stat()
        if lstat(path, &info) == 0 {
            switch info.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFIFO:
                // O_NONBLOCK is not used: a FIFO waits for its reader, as any writer would.
                let fd = open(path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw Self.error(errno, "cannot open the FIFO \(path)") }
                temporary = nil; descriptor = fd
                return
            case S_IFLNK: throw Self.refuse(path, "a symbolic link")
            case S_IFDIR: throw Self.refuse(path, "a directory")
            case S_IFCHR, S_IFBLK: throw Self.refuse(path, "a device")
            default: throw Self.refuse(path, "not a regular file")
            }
        } else if errno != ENOENT {
            throw Self.error(errno, "cannot inspect \(path)")
        }
        let folder = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temp = (folder.isEmpty ? "" : folder + "/") + ".\(name).partial-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.error(errno, "cannot create \(temp) (the folder of --out must exist and be writable)") }
        temporary = temp; descriptor = fd
    }

    deinit {
        // Not finished: an error path. Leave nothing behind.
        guard !finished else { return }
        if descriptor != STDOUT_FILENO { close(descriptor) }
        if let temporary { unlink(temporary) }
    }

    /// Writes all of `bytes`, or throws (ENOSPC: `.diskFull`).
    func put(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.error(errno, "cannot write \(target ?? "standard output")")
            }
            offset += n
        }
    }

    /// Flushes to the disk and closes (both checked), then renames the temporary file over
    /// the target. Throws, removing the temporary file, when any step fails.
    func finish() throws {
        if let temporary, let target {
            guard fsync(descriptor) == 0 else { throw Self.error(errno, "cannot flush \(target) to the disk") }
            let fd = descriptor
            descriptor = -1
            guard close(fd) == 0 else { throw Self.error(errno, "cannot close \(target)") }
            guard rename(temporary, target) == 0 else { throw Self.error(errno, "cannot rename \(temporary) to \(target)") }
        } else if descriptor != STDOUT_FILENO {
            let fd = descriptor
            descriptor = -1
            guard close(fd) == 0 else { throw Self.error(errno, "cannot close \(target ?? "the output")") }
        }
        finished = true
    }

    private static func refuse(_ path: String, _ kind: String) -> M3SearchError {
        M3SearchError(.invalidArgument, "--out \(path) is \(kind): export writes a new or regular file, a FIFO, or `-` for standard output, and never replaces anything else")
    }

    private static func error(_ code: Int32, _ what: String) -> M3SearchError {
        let reason = String(cString: strerror(code))
        switch code {
        case ENOSPC, EDQUOT: return M3SearchError(.diskFull, "\(what): \(reason); nothing was left at the output path")
        case EACCES, EPERM, EROFS: return M3SearchError(.readOnly, "\(what): \(reason)")
        case ENOENT, ENOTDIR: return M3SearchError(.notFound, "\(what): \(reason)")
        default: return M3SearchError(.io, "\(what): \(reason)")
        }
    }
}
