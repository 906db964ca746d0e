import Foundation

/// Async forms for apps: encoding and searching are CPU-bound, so they run off the
/// caller's executor (cooperative threads stay free for UI and I/O).
extension SearchIndex {
    public func search(_ query: String, options: SearchOptions = SearchOptions()) async throws -> SearchReport {
        try await Task.detached(priority: .userInitiated) { try self.search(query, options: options) }.value
    }

    public func add(_ documents: [DocumentInput]) async throws {
        try await Task.detached { try self.add(documents) }.value
    }

    @discardableResult
    public func remove(_ ids: [String]) async throws -> Int {
        try await Task.detached { try self.remove(ids) }.value
    }
}
