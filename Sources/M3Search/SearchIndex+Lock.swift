import Foundation
import M3Store

/// A SearchIndex's write session: the index's `WriterLock`, taken before its first write
/// and held until the SearchIndex is released (or `releaseWriteLock()`).
final class WriteSession: @unchecked Sendable {  // mutated only under SearchIndex.writeLock
    var lock: WriterLock?
    /// `PRAGMA data_version` of the writer connection when the in-memory state was loaded:
    /// it changes when another connection (another process) commits.
    var loadedDataVersion: Int64 = 0
}

extension SearchIndex {
    /// Takes the index's writer lock for this SearchIndex (a no-op when it already holds
    /// it). Writes take it themselves without waiting; call this first to wait instead, or
    /// to fail before any work is done. Searches never need it.
    ///
    /// ```swift
    /// try index.lockForWriting(wait: true) { holder in print("waiting for \(holder?.description ?? "another writer")") }
    /// ```
    /// - Throws: `StoreError.locked` naming the holder's PID, command and start time (when
    ///   not waiting), `StoreError.lockUnavailable` when the lock file cannot be created.
    public func lockForWriting(wait: Bool = false, onWait: ((WriterLock.Holder?) -> Void)? = nil) throws {
        writeLock.lock()
        defer { writeLock.unlock() }
        try takeWriterLock(wait: wait, onWait: onWait)
    }

    /// Lets other processes write the index again; the next write takes the lock anew
    /// (and reloads the graph and postings if another writer changed the file meanwhile).
    public func releaseWriteLock() {
        writeLock.lock()
        defer { writeLock.unlock() }
        writeSession.lock = nil
    }

    /// Takes the lock if not held yet. The caller holds `writeLock`.
    func takeWriterLock(wait: Bool = false, onWait: ((WriterLock.Holder?) -> Void)? = nil) throws {
        guard writeSession.lock == nil, !store.readOnly else { return }
        let lock = try WriterLock(indexPath: path, wait: wait, onWait: onWait)
        // Another process may have written since the graph and postings were loaded: the
        // next commit writes back from memory, so memory must match the file first.
        let version = try store.db.scalarInt("PRAGMA data_version") ?? 0
        if version != writeSession.loadedDataVersion {
            let state = try Self.loadState(store, settings: settings)
            stateLock.write { (hnsw, sparse, documentInfo) = state }
            writeSession.loadedDataVersion = version
        }
        writeSession.lock = lock
    }
}
