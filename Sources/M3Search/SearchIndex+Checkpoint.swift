import Foundation

extension SearchIndex {
    /// Folds the write-ahead log into the index file and truncates it, so the file alone
    /// holds every committed write (call it when closing a long-running writer, such as
    /// the HTTP server at shutdown). Waits for a write in progress to finish first.
    ///
    /// Throws `StoreError` when SQLite cannot checkpoint (a read-only index has no log to fold).
    public func checkpoint() throws {
        writeLock.lock()
        defer { writeLock.unlock() }
        try store.checkpoint()
    }
}
