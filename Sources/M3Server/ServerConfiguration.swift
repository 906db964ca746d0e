import Foundation

/// How `M3Server` listens and what it accepts. Every limit exists so that a slow or
/// hostile client costs bounded memory and threads (the server runs next to an app).
public struct ServerConfiguration: Sendable {
    /// Address to bind: loopback unless told otherwise.
    public var host = "127.0.0.1"
    /// TCP port; 0 picks a free one (read it from `run`'s `onListening`).
    public var port = 8080
    /// Largest request body accepted; larger ones get 413.
    public var maxBodyBytes = 8 << 20
    /// Request bodies being read at once, summed over connections (by Content-Length, or
    /// `maxBodyBytes` when the body is chunked); a request beyond it gets 503. Bounds the
    /// memory many concurrent large uploads can take.
    public var maxBufferedBodyBytes = 64 << 20
    /// A request's head and body must arrive within this time after its first line, or the
    /// connection is closed (slow clients cannot hold a connection open by trickling bytes).
    public var requestReadTimeout: Duration = .seconds(30)
    /// A keep-alive connection with no request for this long is closed.
    public var idleTimeout: Duration = .seconds(60)
    /// Threads that run searches (encoding the query and scoring): CPU work never runs
    /// on the event loops or Swift's cooperative threads.
    public var searchThreads = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Searches admitted at once (running + waiting for a search thread); beyond it, 503.
    public var maxPendingSearches = 256
    /// Writes (POST /documents, DELETE) admitted at once; they run one at a time on their
    /// own thread, so searches keep their threads while a write encodes. Beyond it, 503.
    public var maxPendingWrites = 16
    /// Open connections at most; further ones wait in the listen backlog.
    public var maxConnections = 1024
    /// Queries encoded in one forward pass share at most this many tokens (a query is at
    /// most 512). Larger batches amortise the weights' trip from memory over more queries
    /// but make each query wait for a longer pass.
    public var maxBatchTokens = 2048
    /// How long a query may wait for others to share its forward pass, counted from its
    /// arrival. The wait happens only while earlier searches are still running (their
    /// clients are about to send more): an idle server encodes a query at once.
    public var maxBatchWait: Duration = .milliseconds(3)
    /// Clients send `Authorization: Bearer <key>` or `api-key: <key>`. With `apiKey`
    /// set, every endpoint but `/health` requires a key; `apiKey` allows everything,
    /// `readAPIKey` only searches and metrics. Neither is ever logged.
    public var apiKey: String?
    public var readAPIKey: String?
    /// Serve a non-loopback address with no key (`--insecure-no-auth`); otherwise `run`
    /// refuses to start, since anyone who can reach the port could add and delete documents.
    public var allowsUnauthenticatedRemoteAccess = false
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish before they are
    /// cancelled (a write already running still completes before the index is closed).
    public var shutdownTimeout: Duration = .seconds(30)

    public init() {}

    /// Checks what `run` would otherwise discover too late: keys that no HTTP header can
    /// carry, a read key equal to the full key, and an address reachable from other hosts
    /// with no key. Throws `ServerConfigurationError` saying what to change.
    public func validate() throws {
        for (name, key) in [("API key", apiKey), ("read API key", readAPIKey)] {
            guard let key else { continue }
            // Header values are visible ASCII; a key with spaces or controls could never match.
            if key.isEmpty || !key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) {
                throw ServerConfigurationError("the \(name) must be non-empty printable ASCII without spaces (it is sent in an HTTP header)")
            }
        }
        if readAPIKey != nil && apiKey == nil {
            throw ServerConfigurationError("a read API key needs an API key for writes too (--api-key); otherwise writes would be open to anyone")
        }
        if let apiKey, apiKey == readAPIKey {
            throw ServerConfigurationError("the read API key must differ from the API key (it only allows searches)")
        }
        if apiKey == nil && !allowsUnauthenticatedRemoteAccess && !Self.isLoopback(host) {
            throw ServerConfigurationError(
                "refusing to serve \(host) without an API key: anyone who can reach it could add and delete documents. "
                + "Set --api-key (or M3SEARCH_API_KEY), bind 127.0.0.1, or pass --insecure-no-auth if a proxy in front authenticates")
        }
        if maxBatchTokens < 1 { throw ServerConfigurationError("the batch token budget must be at least 1") }
        if maxBatchWait < .zero { throw ServerConfigurationError("the batch wait must not be negative") }
    }

    /// 127.0.0.0/8, ::1 (also IPv4-mapped) and "localhost"; anything else, including
    /// 0.0.0.0, ::, another address or a host name, may be reachable from other hosts.
    public static func isLoopback(_ host: String) -> Bool {
        var h = host.lowercased()
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        if h.hasPrefix("::ffff:") { h = String(h.dropFirst(7)) }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCIIDigit) && (Int($0) ?? 256) <= 255 }) else {
            return false
        }
        return parts[0] == "127"
    }
}

/// A `ServerConfiguration` that cannot be served; the message says what to change.
public struct ServerConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
