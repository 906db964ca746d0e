import Foundation
import NIOPosix
import Prometheus

/// Dedicated threads for blocking CPU work (model encoding, HNSW, SQLite), with a cap on
/// how many jobs may be admitted at once. Handlers await the result; the NIO event loops
/// and Swift's cooperative threads never run the work, so I/O keeps flowing while the
/// CPU is busy, and a full queue answers 503 at once instead of growing without bound.
final class WorkQueue: Sendable {
    let name: String
    private let pool: NIOThreadPool
    private let limit: Int
    private let admitted = LockedCounter()
    /// Jobs admitted and not finished, exported as a metric.
    private let depth: Gauge

    init(name: String, threads: Int, limit: Int, depth: Gauge) {
        self.name = name
        self.depth = depth
        self.pool = NIOThreadPool(numberOfThreads: max(1, threads))
        self.limit = max(1, limit)
        pool.start()
    }

    /// Runs `body` on one of the queue's threads. Throws `APIError` 503 when `limit`
    /// jobs are already admitted (queued or running).
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await admit { try await self.execute(body) }
    }

    /// Counts `body` as one admitted job while it runs (it may hand its work to the
    /// queue's threads with `execute`, or wait for a batch first). Throws `APIError` 503
    /// when `limit` jobs are already admitted.
    func admit<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard admitted.increment(ifBelow: limit) else {
            throw APIError(status: .serviceUnavailable,
                           message: "the server is busy: \(limit) \(name) requests are already queued; retry shortly",
                           headers: [.retryAfter: "1"])
        }
        depth.increment()
        defer {
            depth.decrement()
            admitted.decrement()
        }
        return try await body()
    }

    /// Runs `body` on one of the queue's threads, for a job admitted already.
    func execute<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    /// Queues `body` for one of the queue's threads, for a job admitted already; it gets
    /// `cancelled: true` instead of running when the queue has shut down.
    func submit(_ body: @escaping @Sendable (_ cancelled: Bool) -> Void) {
        pool.submit { state in
            if case .active = state { body(false) } else { body(true) }
        }
    }

    /// Waits for jobs already running, then stops the threads.
    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}

/// An Int behind a lock: admission counts are touched once per request, never contended long.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func increment(ifBelow limit: Int) -> Bool { add(1, upTo: limit) }

    func decrement() { subtract(1) }

    /// Adds `amount` when the total stays within `limit`.
    func add(_ amount: Int, upTo limit: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard value + amount <= limit else { return false }
        value += amount
        return true
    }

    func subtract(_ amount: Int) {
        lock.lock()
        value -= amount
        lock.unlock()
    }
}
