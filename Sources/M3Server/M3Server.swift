import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import M3Search
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The HTTP service over one `SearchIndex`: a JSON API to search, add and delete
/// documents, health and Prometheus metrics. The model and index are loaded once by the
/// caller; the server runs until SIGTERM/SIGINT (or `shutdown()`), then finishes the
/// requests in flight and checkpoints the index.
///
/// ```swift
/// let index = try SearchIndex(path: "notes.m3index", model: try BGEM3(folder: BGEM3.locate()))
/// let server = M3Server(index: index, configuration: ServerConfiguration(), logger: Logger(label: "m3search"))
/// try await server.run { host, port in print("listening on http://\(host):\(port)") }
/// ```
/// The API is described by `Sources/M3Server/openapi.json` (OpenAPI 3.1).
public final class M3Server: Sendable {
    let index: SearchIndex
    let configuration: ServerConfiguration
    let logger: Logger
    let metrics: ServerMetrics
    let searches: WorkQueue
    let batcher: SearchBatcher
    let writes: WorkQueue
    let readOnly: Bool
    /// Bytes of request bodies being read now (see `maxBufferedBodyBytes`).
    private let bufferedBodyBytes = LockedCounter()
    private let group = LockedValue<ServiceGroup?>(nil)
    private let shutdownRequested = LockedValue(false)

    /// - Parameters:
    ///   - readOnly: the index was opened read-only: writes answer 403.
    ///   - modelLoadSeconds, indexLoadSeconds: startup times, exported as metrics.
    public init(index: SearchIndex, configuration: ServerConfiguration, readOnly: Bool = false,
                modelLoadSeconds: Double = 0, indexLoadSeconds: Double = 0, logger: Logger) {
        self.index = index
        self.configuration = configuration
        self.readOnly = readOnly
        self.logger = logger
        metrics = ServerMetrics(modelLoadSeconds: modelLoadSeconds, indexLoadSeconds: indexLoadSeconds)
        metrics.indexSize(documents: index.documentCount, chunks: index.chunkCount)
        searches = WorkQueue(name: "search", threads: configuration.searchThreads, limit: configuration.maxPendingSearches,
                             depth: metrics.queueDepth("search"))
        batcher = SearchBatcher(index: index, searches: searches, metrics: metrics,
                                maxBatchTokens: configuration.maxBatchTokens, maxWait: configuration.maxBatchWait)
        if !batcher.sharesPasses {
            logger.notice("queries are encoded one at a time: this encoder's results depend on their batch, so batching would change scores")
        }
        // One write thread: writes commit one at a time anyway, and a second writer would
        // only hold a thread waiting for the first.
        writes = WorkQueue(name: "write", threads: 1, limit: configuration.maxPendingWrites, depth: metrics.queueDepth("write"))
    }

    /// Serves until one of `gracefulShutdownSignals` arrives or `shutdown()` is called.
    /// Then it stops accepting connections, lets requests in flight finish (up to
    /// `shutdownTimeout`), waits for running writes, and checkpoints the index's WAL.
    ///
    /// `onListening` gets the bound host and port (useful with port 0).
    /// Throws `ServerConfigurationError` for a configuration `validate()` refuses (such as
    /// a non-loopback address without an API key), or when the address cannot be bound; a
    /// failed checkpoint is logged, not thrown (every write is already committed).
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
                    onListening: @escaping @Sendable (_ host: String, _ port: Int) async -> Void = { _, _ in }) async throws {
        do { try configuration.validate() } catch {
            await batcher.shutdown()
            await searches.shutdown()
            await writes.shutdown()
            throw error
        }
        let host = configuration.host
        let logger = logger
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(
                additionalChannelHandlers: [ParseErrorResponder(),
                                            RequestReadTimeoutHandler(timeout: timeAmount(self.configuration.requestReadTimeout))],
                idleTimeout: timeAmount(configuration.idleTimeout))),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: "m3search",
                                 availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("listening", metadata: ["host": "\(host)", "port": "\(port)"])
                await onListening(host, port)
            },
            logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: gracefulShutdownSignals,
                                                           logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        let serviceGroup = ServiceGroup(configuration: groupConfiguration)
        group.set(serviceGroup)
        if shutdownRequested.get() { await serviceGroup.triggerGracefulShutdown() }

        var failure: (any Error)?
        do { try await serviceGroup.run() } catch { failure = error }
        // No request is left to start work; let the running ones finish, then fold the WAL.
        await batcher.shutdown()
        await searches.shutdown()
        await writes.shutdown()
        if !readOnly {
            do {
                try index.checkpoint()
                logger.info("index checkpointed", metadata: ["documents": "\(index.documentCount)", "chunks": "\(index.chunkCount)"])
            } catch {
                logger.error("index checkpoint failed; SQLite folds the WAL on next open", metadata: ["error": "\(error)"])
            }
        }
        logger.info("stopped")
        if let failure { throw failure }
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    public func shutdown() async {
        shutdownRequested.set(true)
        if let g = group.get() { await g.triggerGracefulShutdown() }
    }

    // MARK: - Routes

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIMiddleware(metrics: metrics))
        if let keys = APIKeys(apiKey: configuration.apiKey, readAPIKey: configuration.readAPIKey) {
            router.add(middleware: AuthenticationMiddleware(keys: keys, metrics: metrics))
        }
        router.post("/search") { request, _ in try await self.search(request) }
        router.post("/documents") { request, _ in try await self.addDocuments(request) }
        router.delete("/documents/**") { request, context in try await self.deleteDocument(request, context: context) }
        router.get("/health") { _, _ in self.health() }
        router.get("/metrics") { _, _ in self.metricsText() }
        return router
    }

    /// Checks and tokenizes the query on a search thread, then waits for a forward pass
    /// shared with the queries that arrive with it (`SearchBatcher`); the search itself
    /// and the JSON answer run on a search thread too.
    func search(_ request: Request) async throws -> Response {
        let body = try await readBody(request)
        let query = try decodeBody(SearchRequest.self, from: body)
        let index = index, metrics = metrics, searches = searches, batcher = batcher
        let bytes = try await searches.admit {
            let prepared = try await searches.execute { try index.prepareQuery(query.query, options: query.options) }
            return try await batcher.search(prepared, options: query.options) { outcome throws -> [UInt8] in
                let report: SearchReport
                do {
                    report = try outcome.get()
                    metrics.search(report)
                } catch let error as M3SearchError where error.kind == .emptyIndex {
                    report = SearchReport(results: [])   // nothing indexed yet: no results, not an error
                }
                var out = JSONWriter(reserving: 4096)
                report.writeJSON(query: query.query, explain: query.explain, to: &out)
                return out.bytes
            }
        }
        return jsonResponse(bytes)
    }

    func addDocuments(_ request: Request) async throws -> Response {
        try requireWritable()
        let body = try await readBody(request)
        let documents = try decodeBody(DocumentsRequest.self, from: body).documents
        let index = index
        let start = ContinuousClock.now
        let (count, chunks) = try await writes.run {
            try index.add(documents)
            return (index.documentCount, index.chunkCount)
        }
        metrics.write("add", duration: ContinuousClock.now - start)
        metrics.indexSize(documents: count, chunks: chunks)
        return jsonResponse(Array("{\"added\":\(documents.count),\"documents\":\(count),\"chunks\":\(chunks)}".utf8))
    }

    func deleteDocument(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try requireWritable()
        // The id may hold slashes (ids are often paths): sent raw or as %2F, either works.
        let raw = context.parameters.getCatchAll().joined(separator: "/")
        guard let id = raw.removingPercentEncoding, !id.isEmpty else {
            throw APIError.badRequest("the document id in the path is empty or not valid percent-encoding")
        }
        let index = index
        let start = ContinuousClock.now
        let (removed, count, chunks) = try await writes.run {
            let removed = try index.remove([id])
            return (removed, index.documentCount, index.chunkCount)
        }
        metrics.write("delete", duration: ContinuousClock.now - start)
        metrics.indexSize(documents: count, chunks: chunks)
        guard removed > 0 else { throw APIError(status: .notFound, message: "no document with id \"\(id)\"") }
        var out = JSONWriter()
        out.raw("{\"deleted\":"); out.string(id)
        out.raw(",\"documents\":\(count),\"chunks\":\(chunks)}")
        return jsonResponse(out.bytes)
    }

    func health() -> Response {
        let documents = index.documentCount, chunks = index.chunkCount
        return jsonResponse(Array("{\"status\":\"ok\",\"documents\":\(documents),\"chunks\":\(chunks),\"read_only\":\(readOnly)}".utf8))
    }

    func metricsText() -> Response {
        metrics.indexSize(documents: index.documentCount, chunks: index.chunkCount)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: metrics.emit())))
    }

    // MARK: - Helpers

    func readBody(_ request: Request) async throws -> [UInt8] {
        let limit = configuration.maxBodyBytes
        let length = request.headers[.contentLength].flatMap { Int($0) }
        if let length, length > limit { throw NIOTooManyBytesError(maxBytes: limit) }
        let reserved = max(length ?? limit, 1)
        guard bufferedBodyBytes.add(reserved, upTo: configuration.maxBufferedBodyBytes) else {
            metrics.rejected("body")
            throw APIError(status: .serviceUnavailable,
                           message: "the server is busy reading other request bodies (--max-buffered-body-bytes); retry shortly",
                           headers: [.retryAfter: "1"])
        }
        defer { bufferedBodyBytes.subtract(reserved) }
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as NIOTooManyBytesError {
            throw error
        } catch {
            // The client went away or the read timeout closed the connection mid-body.
            throw APIError(status: .requestTimeout, message: "the request body did not arrive completely (\(error))")
        }
    }

    func requireWritable() throws {
        if readOnly {
            throw APIError(status: .forbidden, message: "the index file is read-only for this server; writes are disabled")
        }
    }
}

func jsonResponse(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func timeAmount(_ d: Duration) -> TimeAmount {
    let (seconds, attoseconds) = d.components
    return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
}

/// A value behind a lock, for the few mutable fields shared across tasks.
final class LockedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
}
