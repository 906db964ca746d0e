#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The one-writer-per-index lock: an advisory `flock` on the sidecar file `<index>.lock`,
/// which records who holds it (PID, command, start time).
///
/// A writer keeps in-memory copies of the HNSW graph and the postings and writes back the
/// parts it changed, so two writers would overwrite each other's graph: SQLite's own
/// locking serialises their transactions but cannot prevent that. Readers never take this
/// lock (WAL gives them consistent snapshots). The kernel drops a `flock` when its process
/// dies, so a killed writer never leaves a stale lock; the file itself stays, harmlessly.
///
/// ```swift
/// let lock = try WriterLock(indexPath: "notes.m3index")       // throws StoreError.locked
/// let waited = try WriterLock(indexPath: "notes.m3index", wait: true) { holder in print("waiting for \(holder)") }
/// ```
public final class WriterLock: Sendable {
    /// Who holds (or last held) the lock, as recorded in the lock file.
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        public var pid: Int32
        public var command: String
        public var started: String

        public var description: String { "PID \(pid) (\(command), started \(started))" }

        /// The current process, described for the lock file.
        static func current() -> Holder {
            let args = CommandLine.arguments
            let name = args.first.map { ($0 as NSString).lastPathComponent } ?? "?"
            // The program and its subcommand ("m3search index"), not every argument.
            let first = args.count > 1 ? args[1] : ""
            let isSubcommand = !first.isEmpty && !first.hasPrefix("-") && first.count <= 32 && !first.contains(where: { ", /\n".contains($0) })
            let command = isSubcommand ? name + " " + first : name
            let started = ISO8601DateFormatter().string(from: Date())
            return Holder(pid: getpid(), command: command, started: started)
        }

        var fileContents: String { "pid \(pid)\ncommand \(command)\nstarted \(started)\n" }

        init(pid: Int32, command: String, started: String) {
            self.pid = pid
            self.command = command
            self.started = started
        }

        /// Parses `fileContents`; nil when the file is empty or malformed (a holder that
        /// died before writing it).
        init?(fileContents text: String) {
            var fields: [Substring: Substring] = [:]
            for line in text.split(separator: "\n") {
                guard let space = line.firstIndex(of: " ") else { continue }
                fields[line[..<space]] = line[line.index(after: space)...]
            }
            guard let pid = fields["pid"].flatMap({ Int32($0) }) else { return nil }
            self.init(pid: pid, command: String(fields["command"] ?? "?"), started: String(fields["started"] ?? "?"))
        }
    }

    /// The lock file, `<index>.lock`.
    public let path: String
    private let fd: Int32

    /// The lock file of an index.
    public static func lockPath(forIndex indexPath: String) -> String { indexPath + ".lock" }

    /// Takes the lock of the index at `indexPath`, held until this object is released.
    /// - Parameters:
    ///   - wait: false: throw `StoreError.locked` naming the holder when another writer
    ///     has it; true: block until it is free, after calling `onWait` once with the holder.
    /// - Throws: `StoreError.locked` (not waiting), `StoreError.lockUnavailable` when the
    ///   lock file cannot be created (e.g. a read-only folder).
    public init(indexPath: String, wait: Bool = false, onWait: ((Holder?) -> Void)? = nil) throws {
        path = Self.lockPath(forIndex: indexPath)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StoreError.lockUnavailable(path: indexPath, detail: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK else {
                close(fd)
                throw StoreError.lockUnavailable(path: indexPath, detail: "flock on \(path): \(String(cString: strerror(code)))")
            }
            let holder = Self.readHolder(fd)
            guard wait else {
                close(fd)
                throw StoreError.locked(path: indexPath, holder: holder)
            }
            onWait?(holder)
            while flock(fd, LOCK_EX) != 0 {
                guard errno == EINTR else {
                    let code = errno
                    close(fd)
                    throw StoreError.lockUnavailable(path: indexPath, detail: "flock on \(path): \(String(cString: strerror(code)))")
                }
            }
        }
        self.fd = fd
        // Ours now: record who we are (a reader of this file sees us only while we hold it).
        let record = Array(Holder.current().fileContents.utf8)
        _ = ftruncate(fd, 0)
        _ = record.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit {
        // Closing the descriptor releases the flock.
        close(fd)
    }

    /// The holder recorded in the lock file (nil when unreadable or not yet written).
    public static func holder(ofIndex indexPath: String) -> Holder? {
        let fd = open(lockPath(forIndex: indexPath), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readHolder(fd)
    }

    private static func readHolder(_ fd: Int32) -> Holder? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Holder(fileContents: String(decoding: buffer[..<n], as: UTF8.self))
    }
}
