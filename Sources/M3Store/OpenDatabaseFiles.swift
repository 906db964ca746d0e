#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The database files this process has SQLite connections to, by device and inode.
///
/// POSIX advisory locks belong to a process and a file, not to a descriptor: closing *any*
/// descriptor of a database file drops every lock the process's connections hold on it
/// (SQLite's "How To Corrupt An SQLite Database File", §2.2). Another process then takes
/// itself for the last connection, checkpoints and deletes the write-ahead log under this
/// one, whose next read fails (SQLITE_IOERR_SHORT_READ). So m3search opens a database file
/// outside SQLite (the header check before the first connection) only while no connection
/// of this process has it open.
enum OpenDatabaseFiles {
    struct FileID: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var connections: [FileID: Int] = [:]

    static func id(of path: String) -> FileID? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Counts a connection to the file at `path` (after SQLite opened it); returns its id
    /// for `release`.
    static func retain(_ path: String) -> FileID? {
        guard let id = id(of: path) else { return nil }
        lock.lock()
        defer { lock.unlock() }
        connections[id, default: 0] += 1
        return id
    }

    /// Uncounts a connection, after SQLite closed it.
    static func release(_ id: FileID?) {
        guard let id else { return }
        lock.lock()
        defer { lock.unlock() }
        let left = (connections[id] ?? 1) - 1
        connections[id] = left > 0 ? left : nil
    }

    /// The first `count` bytes of the file, read only when no connection of this process
    /// has it open (nil otherwise, or when it cannot be read). The registry stays locked
    /// meanwhile, so no connection can register and take locks before the descriptor closes.
    static func headerIfUnopened(_ path: String, count: Int) -> Data? {
        lock.lock()
        defer { lock.unlock() }
        if let id = id(of: path), connections[id] != nil { return nil }
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return handle.readData(ofLength: count)
    }
}
