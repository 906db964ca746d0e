import ArgumentParser
import Foundation
import Logging
import M3Search
import M3Server

/// `m3search serve`: the JSON API over HTTP, with the model and index loaded once.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve an index over HTTP: search, add and delete documents, health and Prometheus metrics.",
        discussion: """
        Endpoints: POST /search, POST /documents, DELETE /documents/{id}, GET /health, GET /metrics \
        (described in Sources/M3Server/openapi.json). The index is created when absent. SIGTERM or \
        SIGINT stops accepting connections, finishes the requests in flight and checkpoints the index. \
        With --api-key every endpoint but /health needs "Authorization: Bearer KEY" or "api-key: KEY"; \
        an address other than loopback is refused without a key unless --insecure-no-auth is given. \
        Environment: M3SEARCH_INDEX, M3SEARCH_MODEL, M3SEARCH_HOST, M3SEARCH_PORT, M3SEARCH_LOG_LEVEL, \
        M3SEARCH_API_KEY, M3SEARCH_READ_API_KEY.
        """)

    @OptionGroup var location: IndexLocation

    @Option(name: .long, help: "Address to bind (default $M3SEARCH_HOST or 127.0.0.1: loopback only).")
    var host: String?

    @Option(name: .long, help: "TCP port; 0 picks a free one (default $M3SEARCH_PORT or 8080).")
    var port: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Key every request but GET /health must carry (default $M3SEARCH_API_KEY; the variable keeps it out of `ps`).",
        valueName: "key"))
    var apiKey: String?

    @Option(name: .long, help: ArgumentHelp("A second key that may only search and read /metrics (default $M3SEARCH_READ_API_KEY).",
                                            valueName: "key"))
    var readApiKey: String?

    @Flag(name: .long, help: "Serve an address other than loopback without an API key (only behind a proxy that authenticates).")
    var insecureNoAuth = false

    @Option(name: .long, help: "Largest request body accepted, in bytes (larger: 413).")
    var maxBodyBytes: Int = 8 << 20

    @Option(name: .long, help: "Request body bytes being read at once over all connections (Content-Length, or --max-body-bytes when chunked); more get 503.")
    var maxBufferedBodyBytes: Int = 64 << 20

    @Option(name: .long, help: "Seconds a request's head and body may take to arrive before the connection is closed.")
    var readTimeout: Double = 30

    @Option(name: .long, help: "Seconds an idle keep-alive connection stays open.")
    var idleTimeout: Double = 60

    @Option(name: .long, help: "Threads running searches: the number of cores unless given.")
    var searchThreads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Option(name: .long, help: "Tokens encoded together in one forward pass at most, over the queries that arrive together (a query has at most 512).")
    var maxBatchTokens: Int = 2048

    @Option(name: .long, help: "Milliseconds a query may wait for others to share its forward pass (only while earlier searches run; never when idle).")
    var batchWaitMs: Double = 3

    @Option(name: .long, help: "Searches admitted at once, running or queued; more get 503.")
    var maxPendingSearches: Int = 256

    @Option(name: .long, help: "Writes admitted at once, running or queued; more get 503.")
    var maxPendingWrites: Int = 16

    @Option(name: .long, help: "Open connections at most; more wait in the listen backlog.")
    var maxConnections: Int = 1024

    @Option(name: .long, help: "Seconds in-flight requests get to finish after SIGTERM/SIGINT.")
    var shutdownTimeout: Double = 30

    @Option(name: .long, help: "trace, debug, info (one line per request), notice, warning, error or critical (default $M3SEARCH_LOG_LEVEL or info).")
    var logLevel: String?

    @Option(name: .long, help: "text (key=value lines, request text quoted and escaped) or json (one object per line), on stderr.")
    var logFormat: LogFormat = .text

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    func validate() throws {
        _ = try resolvedPort()
        _ = try resolvedLogLevel()
        if maxBatchTokens < 1 { throw ValidationError("--max-batch-tokens must be at least 1") }
        if !(batchWaitMs >= 0 && batchWaitMs <= 1000) { throw ValidationError("--batch-wait-ms must be between 0 and 1000") }
        // Before the model loads: a server that must not start should say so at once.
        do { try securityConfiguration().validate() } catch let error as ServerConfigurationError {
            throw ValidationError(error.description)
        }
        if maxBodyBytes < 1024 { throw ValidationError("--max-body-bytes must be at least 1024") }
        if maxBufferedBodyBytes < maxBodyBytes { throw ValidationError("--max-buffered-body-bytes must be at least --max-body-bytes") }
        for (name, value) in [("--read-timeout", readTimeout), ("--idle-timeout", idleTimeout), ("--shutdown-timeout", shutdownTimeout)]
        where !(value > 0 && value.isFinite) {
            throw ValidationError("\(name) must be a positive number of seconds")
        }
        for (name, value) in [("--search-threads", searchThreads), ("--max-pending-searches", maxPendingSearches),
                              ("--max-pending-writes", maxPendingWrites), ("--max-connections", maxConnections)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
    }

    func resolvedPort() throws -> Int {
        if let port {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
            return port
        }
        guard let env = ProcessInfo.processInfo.environment["M3SEARCH_PORT"], !env.isEmpty else { return 8080 }
        guard let p = Int(env), (0...65535).contains(p) else { throw ValidationError("M3SEARCH_PORT=\(env) is not a port number (0–65535)") }
        return p
    }

    func resolvedLogLevel() throws -> Logger.Level {
        let text = logLevel ?? ProcessInfo.processInfo.environment["M3SEARCH_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ValidationError("log level \"\(text)\" is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }

    /// Host, keys and the insecure flag, from flags and then the environment (an empty
    /// variable counts as unset).
    func securityConfiguration() -> ServerConfiguration {
        let environment = ProcessInfo.processInfo.environment
        func env(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        var configuration = ServerConfiguration()
        configuration.host = host ?? env("M3SEARCH_HOST") ?? "127.0.0.1"
        configuration.apiKey = apiKey ?? env("M3SEARCH_API_KEY")
        configuration.readAPIKey = readApiKey ?? env("M3SEARCH_READ_API_KEY")
        configuration.allowsUnauthenticatedRemoteAccess = insecureNoAuth
        return configuration
    }

    func run() async throws {
        let level = try resolvedLogLevel()
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == .json ? JSONLogHandler(label: label) : TextLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "m3search")

        var configuration = securityConfiguration()
        configuration.port = try resolvedPort()
        configuration.maxBodyBytes = maxBodyBytes
        configuration.maxBufferedBodyBytes = maxBufferedBodyBytes
        configuration.requestReadTimeout = .milliseconds(Int64(readTimeout * 1000))
        configuration.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
        configuration.searchThreads = searchThreads
        configuration.maxBatchTokens = maxBatchTokens
        configuration.maxBatchWait = .microseconds(Int64((batchWaitMs * 1000).rounded()))
        configuration.maxPendingSearches = maxPendingSearches
        configuration.maxPendingWrites = maxPendingWrites
        configuration.maxConnections = maxConnections
        configuration.shutdownTimeout = .milliseconds(Int64(shutdownTimeout * 1000))

        let path = location.index
        var t = Date()
        let model = try location.modelOptions.load()
        let modelSeconds = Date().timeIntervalSince(t)
        t = Date()
        let readOnly = FileManager.default.fileExists(atPath: path) && !location.path.isWritable
        let index = try SearchIndex(path: path, model: model, options: IndexOptions(readOnly: readOnly))
        let indexSeconds = Date().timeIntervalSince(t)
        for line in index.notes { logger.notice("\(line)", metadata: ["index": "\(path)"]) }
        if index.identityUpgrade == .upgraded {
            logger.notice("upgraded the index's model identity to v2", metadata: ["index": "\(path)"])
        }
        logger.info("loaded", metadata: [
            "index": "\(path)", "documents": "\(index.documentCount)", "chunks": "\(index.chunkCount)",
            "read_only": "\(readOnly)", "model_load_seconds": "\(String(format: "%.2f", modelSeconds))",
            "index_load_seconds": "\(String(format: "%.2f", indexSeconds))",
            "auth": "\(configuration.apiKey == nil ? "none" : configuration.readAPIKey == nil ? "api key" : "api key and read key")",
        ])
        if configuration.apiKey == nil && !ServerConfiguration.isLoopback(configuration.host) {
            logger.warning("serving without authentication on a non-loopback address (--insecure-no-auth)", metadata: ["host": "\(configuration.host)"])
        }

        let server = M3Server(index: index, configuration: configuration, readOnly: readOnly,
                              modelLoadSeconds: modelSeconds, indexLoadSeconds: indexSeconds, logger: logger)
        do {
            try await server.run { host, port in
                // One line on stdout that scripts (and the tests) can wait for.
                let shown = host.contains(":") ? "[\(host)]" : host
                FileHandle.standardOutput.write(Data("m3search: listening on http://\(shown):\(port)\n".utf8))
            }
        } catch {
            throw M3SearchError(.io, "cannot serve on \(configuration.host):\(configuration.port): \(error)", underlying: error)
        }
    }
}
