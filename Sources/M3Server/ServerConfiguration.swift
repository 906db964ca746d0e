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
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish before they are
    /// cancelled (a write already running still completes before the index is closed).
    public var shutdownTimeout: Duration = .seconds(30)

    public init() {}
}
