import Foundation
import M3Search

/// Dynamic batching of searches: queries that arrive together share one forward pass.
///
/// One encoder thread takes the waiting queries (up to `maxBatchTokens` tokens), encodes
/// them with one `BGEM3.encode` call, and hands each search to the search threads, where
/// they run in parallel while the encoder thread starts on the next batch. A short query's
/// forward pass costs nearly as much alone as with a few others (the weights stream from
/// memory once per pass), so under load one pass per batch, not per query, is the saving.
///
/// When to start a batch:
/// - the encoder is idle and nothing is being searched: at once (no latency added when idle);
/// - searches of the last batch are still running: their clients are likely to send their
///   next query within moments, so it waits for them, up to `maxWait` after the first
///   waiting query arrived, until the token budget is full or those searches are done;
/// - the encoder was busy: everything that arrived meanwhile goes into the next pass.
///
/// A query gives the same results alone or batched when the encoder computes each short
/// sequence's rows independently of its batch (the short-query path does; tested bit for
/// bit wherever the encoder is batch-invariant); longer queries always get a pass alone.
final class SearchBatcher: @unchecked Sendable {
    private struct Waiting {
        let query: PreparedQuery
        let options: SearchOptions
        let arrival: ContinuousClock.Instant
        /// Called once, on a search thread, with the search's outcome.
        let complete: @Sendable (Result<SearchReport, any Error>) -> Void
    }

    private let index: SearchIndex
    private let searches: WorkQueue
    private let metrics: ServerMetrics
    private let maxBatchTokens: Int
    private let maxWait: Duration
    /// Queries share forward passes only when the encoder is batch-invariant (checked at
    /// start); otherwise each is encoded alone, in arrival order, and answers exactly as
    /// `SearchIndex.search` would.
    let sharesPasses: Bool
    // Guards everything below; the encoder thread sleeps on it.
    private let condition = NSCondition()
    private var waiting: [Waiting] = []
    private var waitingTokens = 0
    /// Queries encoded whose searches have not finished.
    private var searching = 0
    private var stopping = false
    private var finished = false
    /// Tests hold batches back to line queries up (`pause()`, `resume()`).
    private var paused = false
    private var waitedPasses = 0

    init(index: SearchIndex, searches: WorkQueue, metrics: ServerMetrics, maxBatchTokens: Int, maxWait: Duration) {
        self.index = index
        self.searches = searches
        self.metrics = metrics
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.maxWait = maxWait
        sharesPasses = (try? index.encoderIsBatchInvariant()) ?? false
        let thread = Thread { [self] in self.encodeLoop() }
        thread.name = "m3search-encoder"
        thread.start()
    }

    /// Encodes `query` in the next forward pass, searches with it, and returns what
    /// `finish` makes of the outcome (run on the search thread, so rendering a large
    /// answer stays off Swift's cooperative threads). The caller has admitted the request:
    /// the search queue's limit covers waiting, encoding and searching.
    func search<T: Sendable>(_ query: PreparedQuery, options: SearchOptions,
                             finish: @escaping @Sendable (Result<SearchReport, any Error>) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let complete: @Sendable (Result<SearchReport, any Error>) -> Void = { outcome in
                continuation.resume(with: Result { try finish(outcome) })
            }
            condition.lock()
            if stopping {
                condition.unlock()
                complete(.failure(APIError(status: .serviceUnavailable, message: "the server is shutting down", headers: [.retryAfter: "1"])))
                return
            }
            waiting.append(Waiting(query: query, options: options, arrival: .now, complete: complete))
            waitingTokens += query.tokenIDs.count
            condition.signal()
            condition.unlock()
        }
    }

    /// Finishes the queries already waiting, then stops the encoder thread.
    func shutdown() async {
        stop()
        while !isFinished { try? await Task.sleep(for: .milliseconds(2)) }
    }

    private func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private var isFinished: Bool {
        condition.lock()
        defer { condition.unlock() }
        return finished
    }

    private func encodeLoop() {
        while let batch = nextBatch() {
            let start = ContinuousClock.now
            let embeddings = Result { try index.encodeQueries(batch.map(\.query)) }
            let encodeSeconds = seconds(ContinuousClock.now - start)
            metrics.batch(size: batch.count, tokens: batch.reduce(0) { $0 + $1.query.tokenIDs.count },
                          wait: start - batch[0].arrival)
            switch embeddings {
            case .failure(let error):
                finishSearches(batch.count)
                for w in batch { w.complete(.failure(error)) }
            case .success(let embeddings):
                let index = index
                for (w, embedding) in zip(batch, embeddings) {
                    searches.submit { [self] cancelled in
                        let result = Result<SearchReport, any Error> {
                            if cancelled { throw APIError(status: .serviceUnavailable, message: "the server is shutting down") }
                            var report = try index.search(encoded: embedding, options: w.options)
                            report.encodeSeconds = encodeSeconds
                            return report
                        }
                        // Counted done before the answer goes out: a client's next query
                        // must never find its own finished search still "running".
                        finishSearches(1)
                        w.complete(result)
                    }
                }
            }
        }
        condition.lock()
        finished = true
        condition.unlock()
    }

    /// Waits for queries and takes the next batch (its searches counted as running);
    /// nil once stopping and nothing is left.
    private func nextBatch() -> [Waiting]? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty || (paused && !stopping) {
            if stopping && waiting.isEmpty { return nil }
            condition.wait()
        }
        // Others are being searched: their clients may send their next query any moment.
        let deadline = Date(timeIntervalSinceNow: seconds(maxWait - (ContinuousClock.now - waiting[0].arrival)))
        var waited = false
        while sharesPasses && searching > 0 && waitingTokens < maxBatchTokens && !stopping && Date() < deadline {
            waited = true
            condition.wait(until: deadline)
        }
        if waited { waitedPasses += 1 }
        // Arrival order, up to the token budget (always at least one query); a long query
        // (see `PreparedQuery.sharesPass`) runs alone, so it answers exactly as alone.
        var tokens = 0, count = 0
        for w in waiting {
            let n = w.query.tokenIDs.count
            if count > 0 && (!sharesPasses || !w.query.sharesPass || tokens + n > maxBatchTokens) { break }
            tokens += n
            count += 1
            if !w.query.sharesPass { break }
        }
        let batch = Array(waiting.prefix(count))
        waiting.removeFirst(count)
        waitingTokens -= tokens
        searching += count
        return batch
    }

    /// Queries waiting for a forward pass (tests).
    var waitingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting.count
    }

    /// Passes that waited for more queries to arrive (tests: an idle server never waits).
    var passesThatWaited: Int {
        condition.lock()
        defer { condition.unlock() }
        return waitedPasses
    }

    /// Holds every query back until `resume()` (tests line up a batch this way).
    func pause() {
        condition.lock()
        paused = true
        condition.unlock()
    }

    func resume() {
        condition.lock()
        paused = false
        condition.signal()
        condition.unlock()
    }

    private func finishSearches(_ count: Int) {
        condition.lock()
        searching -= count
        condition.signal()
        condition.unlock()
    }
}

func seconds(_ d: Duration) -> Double {
    let (s, attoseconds) = d.components
    return Double(s) + Double(attoseconds) / 1e18
}
