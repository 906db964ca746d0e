import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an engine export stopped (the `underlying` cause of the `M3SearchError` thrown).
/// Nothing is left at the output folder when one is thrown: the files are written into a
/// hidden staging folder next to it, which is removed on every error. The messages are in
/// the library's terms; the command line adds its flags (`ExitStatus`).
package enum ExportError: Error, CustomStringConvertible, Equatable {
    /// The output path names something that is not a plain folder (a file, a symbolic link, a FIFO, a device).
    case notAFolder(path: String, kind: String)
    /// The output folder has files in it that no earlier engine export wrote.
    case folderNotEmpty(path: String)
    /// The output folder holds an earlier engine export and replacing it was not asked for.
    case earlierExport(path: String)
    /// The folder that should contain the output folder does not exist.
    case missingParent(path: String)
    /// A system call failed (`errno` as reported).
    case io(path: String, operation: String, errno: Int32)
    /// A stored vector holds NaN or infinity; no engine accepts it.
    case nonFinite(chunk: String, vector: String)
    /// A value is longer than the engine can hold.
    case tooLong(chunk: String, field: String, bytes: Int, limit: Int, engine: String)

    package var description: String {
        switch self {
        case let .notAFolder(path, kind):
            return "\(path) is \(kind), not a folder: an engine export goes into a new or empty folder (nothing was written)"
        case let .folderNotEmpty(path):
            return "\(path) is not empty and holds no earlier m3search export: choose a new or empty folder (nothing was written)"
        case let .earlierExport(path):
            return "\(path) holds an earlier export: replace it, or choose another folder (nothing was written)"
        case let .missingParent(path):
            return "the folder \(path) does not exist: create it first (nothing was written)"
        case let .io(path, operation, code):
            return "cannot \(operation) \(path): \(String(cString: strerror(code))) (the partial export was removed)"
        case let .nonFinite(chunk, vector):
            return "chunk \(chunk) has a non-finite value in its \(vector) vector: the index is damaged (nothing was written)"
        case let .tooLong(chunk, field, bytes, limit, engine):
            return "chunk \(chunk): its \(field) is \(bytes) bytes; \(engine) holds at most \(limit) (nothing was written)"
        }
    }
}

/// One output file, written through a buffer with every write checked (a full disk is an
/// error, never a silently short file), then fsync'ed when closed.
final class ExportFile {
    let path: String
    /// The records not yet written out.
    private var json = JSONWriter(reserving: ExportFile.bufferBytes + (1 << 16))
    /// Bytes written out so far.
    private var drained = 0
    private var fd: Int32

    static let bufferBytes = 1 << 20

    /// The file's size once everything buffered is written.
    var size: Int { drained + json.bytes.count }

    /// Creates `path`, which must not exist yet (the staging folder is new and private).
    init(creating path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw ExportError.io(path: path, operation: "create", errno: errno) }
    }

    deinit { if fd >= 0 { _ = closeDescriptor(fd) } }

    /// Appends one record through `body`, then writes the buffer out once it holds a megabyte.
    func record(_ body: (inout JSONWriter) throws -> Void) throws {
        try body(&json)
        if json.bytes.count >= Self.bufferBytes { try drain() }
    }

    private func drain() throws {
        try json.bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ExportError.io(path: path, operation: "write", errno: errno)
                }
                offset += n
            }
        }
        drained += json.bytes.count
        json = JSONWriter(reserving: Self.bufferBytes + (1 << 16))
    }

    /// Writes what is buffered, fsyncs and closes; the file is complete on disk after this.
    func close() throws {
        try drain()
        if fsync(fd) != 0 { throw ExportError.io(path: path, operation: "sync", errno: errno) }
        let result = closeDescriptor(fd)
        fd = -1
        if result != 0 { throw ExportError.io(path: path, operation: "close", errno: errno) }
    }
}

/// The hidden folder an export is written into, next to its final place so that the last
/// step is one rename on the same file system.
final class StagingFolder {
    let path: String
    /// Files created, relative to `path`, in creation order.
    private(set) var files: [String] = []

    init(next target: String) throws {
        let url = URL(fileURLWithPath: target)
        let parent = url.deletingLastPathComponent().path
        path = parent + "/." + url.lastPathComponent + ".m3export-\(getpid())-\(String(UInt64.random(in: 0 ... .max), radix: 16))"
        if mkdir(path, 0o755) != 0 { throw ExportError.io(path: path, operation: "create the folder", errno: errno) }
    }

    /// Creates `relative` (its folders too) inside the staging folder.
    func create(_ relative: String) throws -> ExportFile {
        var folder = path
        for part in relative.split(separator: "/").dropLast() {
            folder += "/" + part
            if mkdir(folder, 0o755) != 0 && errno != EEXIST {
                throw ExportError.io(path: folder, operation: "create the folder", errno: errno)
            }
        }
        files.append(relative)
        return try ExportFile(creating: path + "/" + relative)
    }

    /// Writes a small file whole.
    func write(_ relative: String, _ text: String) throws {
        let file = try create(relative)
        try file.record { $0.raw(text) }
        try file.close()
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Where `--out` points and how the finished staging folder takes its place.
struct OutputTarget {
    enum State { case absent, emptyFolder, earlierExport }
    let path: String
    let state: State

    /// Inspects `path` without following links. Refuses anything but a missing path, an empty
    /// folder, or (with `replacing`) a folder holding an earlier engine export.
    init(_ path: String, replacing: Bool) throws {
        // A trailing slash would make the staging folder a child of the target.
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
        var info = stat()
        if lstat(trimmed, &info) != 0 {
            guard errno == ENOENT else { throw ExportError.io(path: trimmed, operation: "inspect", errno: errno) }
            let parent = URL(fileURLWithPath: trimmed).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ExportError.missingParent(path: parent)
            }
            state = .absent
            return
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: break
        case S_IFLNK: throw ExportError.notAFolder(path: trimmed, kind: "a symbolic link")
        case S_IFREG: throw ExportError.notAFolder(path: trimmed, kind: "a file")
        case S_IFIFO: throw ExportError.notAFolder(path: trimmed, kind: "a FIFO")
        case S_IFCHR, S_IFBLK: throw ExportError.notAFolder(path: trimmed, kind: "a device")
        default: throw ExportError.notAFolder(path: trimmed, kind: "not a regular folder")
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: trimmed)) ?? []
        if entries.isEmpty {
            state = .emptyFolder
        } else if EngineExport.isEarlierExport(trimmed) {
            guard replacing else { throw ExportError.earlierExport(path: trimmed) }
            state = .earlierExport
        } else {
            throw ExportError.folderNotEmpty(path: trimmed)
        }
    }

    /// Moves the complete staging folder to `path`. An earlier export is moved aside first
    /// and removed only once the new one is in place (put back if the move fails).
    func commit(_ staging: StagingFolder) throws {
        try syncFolder(staging.path)
        switch state {
        case .absent, .emptyFolder:
            // rename(2) replaces an empty folder and fails on a non-empty one, so a folder
            // filled by someone else meanwhile is never overwritten.
            if rename(staging.path, path) != 0 { throw ExportError.io(path: path, operation: "move the export to", errno: errno) }
        case .earlierExport:
            let aside = staging.path + "-old"
            if rename(path, aside) != 0 { throw ExportError.io(path: path, operation: "move the earlier export aside from", errno: errno) }
            if rename(staging.path, path) != 0 {
                let code = errno
                _ = rename(aside, path)
                throw ExportError.io(path: path, operation: "move the export to", errno: code)
            }
            try? FileManager.default.removeItem(atPath: aside)
        }
        try? syncFolder(URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    private func syncFolder(_ folder: String) throws {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw ExportError.io(path: folder, operation: "open", errno: errno) }
        defer { _ = closeDescriptor(fd) }
        if fsync(fd) != 0 { throw ExportError.io(path: folder, operation: "sync", errno: errno) }
    }
}

/// close(2), named apart from `ExportFile.close()`.
private func closeDescriptor(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}
