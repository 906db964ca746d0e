import Foundation
import HTTPTypes
import Hummingbird

/// Static API keys, as `--api-key` and `--read-api-key` give them.
///
/// A request proves a key with `Authorization: Bearer <key>` or `api-key: <key>` (the
/// header Qdrant's clients send). `/health` is open, for load balancers; searches and
/// metrics take either key; writes take only the full key. The keys are compared in time
/// that does not depend on how much of a guess matches, and are never logged, put in an
/// error message or a metrics label.
///
/// hummingbird-auth is not used: its authenticators resolve a user identity into a custom
/// request context, which a fixed key does not need, and it offers neither the `api-key`
/// header nor a constant-time comparison, the two things this check is about.
struct APIKeys: Sendable {
    enum Access: Comparable { case none, read, write }

    private let full: [UInt8]
    private let read: [UInt8]?

    /// nil when no key is configured: every request is allowed.
    init?(apiKey: String?, readAPIKey: String?) {
        guard let apiKey else { return nil }
        full = Array(apiKey.utf8)
        read = readAPIKey.map { Array($0.utf8) }
    }

    /// What the request's key allows.
    func access(of request: Request) -> Access {
        // Every credential the request carries is tried (a client may send both headers).
        var best = Access.none
        for presented in Self.presentedKeys(request.headers) {
            if Self.constantTimeEquals(presented, full) { return .write }
            if let read, Self.constantTimeEquals(presented, read) { best = .read }
        }
        return best
    }

    /// The keys in `Authorization: Bearer <key>` (scheme case-insensitive, RFC 9110) and `api-key: <key>`.
    static func presentedKeys(_ headers: HTTPFields) -> [ArraySlice<UInt8>] {
        var keys: [ArraySlice<UInt8>] = []
        for value in headers[values: .authorization] {
            let parts = value.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { continue }
            keys.append(trimmed(Array(parts[1].utf8)[...]))
        }
        for value in headers[values: apiKeyField] { keys.append(trimmed(Array(value.utf8)[...])) }
        return keys
    }

    static let apiKeyField = HTTPField.Name("api-key")!

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var b = bytes
        while let f = b.first, f == 0x20 || f == 0x09 { b = b.dropFirst() }
        while let l = b.last, l == 0x20 || l == 0x09 { b = b.dropLast() }
        return b
    }

    /// Equal bytes, in time that depends only on the secret's length: every byte of the
    /// secret is compared whatever the guess holds, so timing reveals nothing of how much
    /// of a guess was right (the length of a guess is the guesser's own knowledge).
    static func constantTimeEquals(_ presented: ArraySlice<UInt8>, _ secret: [UInt8]) -> Bool {
        var difference = UInt(truncatingIfNeeded: presented.count ^ secret.count)
        let start = presented.startIndex
        for i in 0..<secret.count {
            let p: UInt8 = i < presented.count ? presented[start + i] : ~secret[i]
            difference |= UInt(p ^ secret[i])
        }
        return difference == 0
    }
}

/// Answers 401 (no or a wrong key) or 403 (the read key on a write) before the route runs,
/// so an unauthenticated client never gets its body read.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let keys: APIKeys
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let needed = Self.requiredAccess(method: request.method, path: request.uri.path)
        guard needed != .none else { return try await next(request, context) }
        let granted = keys.access(of: request)
        if granted == .none {
            metrics.rejected("unauthorized")
            var error = APIError(status: .unauthorized,
                                 message: "this server requires an API key: send \"Authorization: Bearer <key>\" or \"api-key: <key>\"")
            error.headers[.wwwAuthenticate] = "Bearer realm=\"m3search\""
            throw error
        }
        if granted < needed {
            metrics.rejected("forbidden")
            throw APIError(status: .forbidden, message: "this API key may only search and read metrics; writes need the server's full API key")
        }
        return try await next(request, context)
    }

    /// `/health` is open; POST /search, GET /metrics (and unknown routes, whose answer is a
    /// 404 or 405) need a read key; everything else writes.
    static func requiredAccess(method: HTTPRequest.Method, path: String) -> APIKeys.Access {
        if path == "/health" && method == .get { return .none }
        if method == .post && path == "/search" { return .read }
        if method == .get || method == .head { return .read }
        if method == .post && path == "/documents" { return .write }
        if method == .delete && path.hasPrefix("/documents/") { return .write }
        return .read
    }
}
