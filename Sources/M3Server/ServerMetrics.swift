import Foundation
import M3Search
import Prometheus

/// The server's Prometheus metrics, in one registry per server (tests run several).
///
/// Names (all prefixed `m3search_`):
/// - `http_requests_total{route, method, status}`: requests answered;
/// - `http_request_duration_seconds{route}`: latency histogram, buckets from 1 ms to 30 s
///   close enough to read P50/P95/P99 with `histogram_quantile`;
/// - `http_requests_in_flight`, `http_requests_rejected_total{reason}` (503s when busy:
///   search, write, body; 401 unauthorized; 403 forbidden: a read key on a write),
///   `queue_depth{queue}` (search, write: admitted, not finished);
/// - `query_encode_duration_seconds` (the forward pass that encoded the query, shared by
///   its batch), `search_stage_duration_seconds{stage}` (candidates, score, fuse): the
///   stages of each search, from `SearchReport`;
/// - `search_batch_size` (queries per forward pass), `search_batch_tokens`,
///   `search_batch_wait_seconds` (from the first query's arrival to its pass): dynamic batching;
/// - `write_duration_seconds{operation}` (add, delete): encoding plus commit;
/// - `index_documents`, `index_chunks`; `model_load_seconds`, `index_load_seconds`.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    /// Route labels come from this fixed set (the OpenAPI paths plus "unmatched"), so a
    /// client probing random paths cannot grow the label space.
    static let latencyBuckets: [Duration] = [
        0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1,
        0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30,
    ].map { .microseconds(Int64(($0 * 1_000_000).rounded())) }
    static let stageBuckets: [Duration] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
        0.15, 0.25, 0.5, 1, 2.5, 5,
    ].map { .microseconds(Int64(($0 * 1_000_000).rounded())) }
    static let writeBuckets: [Duration] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
    ].map { .microseconds(Int64(($0 * 1_000_000).rounded())) }

    let inFlight: Gauge
    let encode: DurationHistogram
    let candidatesStage: DurationHistogram
    let scoreStage: DurationHistogram
    let fuseStage: DurationHistogram
    let documents: Gauge
    let chunks: Gauge
    let batchSize: ValueHistogram
    let batchTokens: ValueHistogram
    let batchWait: DurationHistogram

    init(modelLoadSeconds: Double, indexLoadSeconds: Double) {
        inFlight = registry.makeGauge(descriptor: Self.name("http", "requests_in_flight", unit: "",
                                                            help: "Requests being handled."))
        encode = registry.makeDurationHistogram(
            descriptor: Self.name(nil, "query_encode_duration", unit: "seconds", help: "Time to encode a search query with the model."),
            buckets: Self.stageBuckets)
        let stage = Self.name(nil, "search_stage_duration", unit: "seconds",
                              help: "Time per search stage after encoding: candidates (HNSW and sparse), score (exact rescoring), fuse (fusion, grouping, texts).")
        candidatesStage = registry.makeDurationHistogram(descriptor: stage, labels: [("stage", "candidates")], buckets: Self.stageBuckets)
        scoreStage = registry.makeDurationHistogram(descriptor: stage, labels: [("stage", "score")], buckets: Self.stageBuckets)
        fuseStage = registry.makeDurationHistogram(descriptor: stage, labels: [("stage", "fuse")], buckets: Self.stageBuckets)
        batchSize = registry.makeValueHistogram(
            descriptor: Self.name("search", "batch_size", unit: "", help: "Queries encoded together in one forward pass (dynamic batching)."),
            buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256])
        batchTokens = registry.makeValueHistogram(
            descriptor: Self.name("search", "batch_tokens", unit: "", help: "Tokens in one forward pass of queries."),
            buckets: [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192])
        batchWait = registry.makeDurationHistogram(
            descriptor: Self.name("search", "batch_wait", unit: "seconds", help: "Time from the arrival of a batch's first query to the start of its forward pass."),
            buckets: Self.stageBuckets)
        documents = registry.makeGauge(descriptor: Self.name("index", "documents", unit: "", help: "Documents in the index."))
        chunks = registry.makeGauge(descriptor: Self.name("index", "chunks", unit: "", help: "Chunks (vectors) in the index."))
        registry.makeGauge(descriptor: Self.name("model", "load", unit: "seconds", help: "Time to load the model at startup."))
            .set(modelLoadSeconds)
        registry.makeGauge(descriptor: Self.name("index", "load", unit: "seconds", help: "Time to open the index and rebuild its in-memory graph and postings at startup."))
            .set(indexLoadSeconds)
    }

    static func name(_ subsystem: String?, _ metric: String, unit: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "m3search", subsystem: subsystem, metricName: metric, unitName: unit, helpText: help)
    }

    func request(route: String, method: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: Self.name("http", "requests", unit: "total", help: "HTTP requests answered, by route, method and status."),
                             labels: [("route", route), ("method", method), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: Self.name("http", "request_duration", unit: "seconds",
                                                             help: "Time from a request's head to its response, by route."),
                                       labels: [("route", route)], buckets: Self.latencyBuckets).record(duration)
    }

    func queueDepth(_ queue: String) -> Gauge {
        registry.makeGauge(descriptor: Self.name(nil, "queue_depth", unit: "",
                                                 help: "Searches or writes admitted and not finished (running or waiting for a thread)."),
                           labels: [("queue", queue)])
    }

    func rejected(_ reason: String) {
        registry.makeCounter(descriptor: Self.name("http", "requests_rejected", unit: "total",
                                                   help: "Requests refused: 503 when the search or write queue was full or too many body bytes were being read; 401 without a valid API key; 403 for a read-only key on a write."),
                             labels: [("reason", reason)]).increment()
    }

    func search(_ report: SearchReport) {
        encode.record(.seconds(report.encodeSeconds))
        candidatesStage.record(.seconds(report.candidateSeconds))
        scoreStage.record(.seconds(report.scoreSeconds))
        fuseStage.record(.seconds(report.fuseSeconds))
    }

    func batch(size: Int, tokens: Int, wait: Duration) {
        batchSize.record(Double(size))
        batchTokens.record(Double(tokens))
        batchWait.record(max(wait, .zero))
    }

    func write(_ operation: String, duration: Duration) {
        registry.makeDurationHistogram(descriptor: Self.name(nil, "write_duration", unit: "seconds",
                                                             help: "Time of a write request's work: encoding the documents and committing."),
                                       labels: [("operation", operation)], buckets: Self.writeBuckets).record(duration)
    }

    func indexSize(documents: Int, chunks: Int) {
        self.documents.set(Double(documents))
        self.chunks.set(Double(chunks))
    }

    /// The exposition text (Prometheus text format 0.0.4).
    func emit() -> [UInt8] { registry.emitToBuffer() }
}
