import Foundation

/// The API's endpoints as the OpenAPI document names them. The router registers exactly
/// these; metrics label requests with `path`; a known path with another method gets 405.
package struct Endpoint: Sendable, Hashable {
    package let method: String
    /// The OpenAPI path template.
    package let path: String
    /// The path Hummingbird's router registers (ids may contain slashes: a catch-all).
    let routerPath: String

    package static let all: [Endpoint] = [
        Endpoint(method: "POST", path: "/search", routerPath: "/search"),
        Endpoint(method: "POST", path: "/documents", routerPath: "/documents"),
        Endpoint(method: "DELETE", path: "/documents/{id}", routerPath: "/documents/**"),
        Endpoint(method: "GET", path: "/health", routerPath: "/health"),
        Endpoint(method: "GET", path: "/metrics", routerPath: "/metrics"),
    ]

    /// The metrics label for a route the router matched (its registered path), else "unmatched".
    static func label(routerPath: String?) -> String {
        all.first { $0.routerPath == routerPath }?.path ?? "unmatched"
    }

    /// Methods served at a request path, for 405 answers.
    static func methods(matching requestPath: String) -> [String] {
        let segments = requestPath.split(separator: "/", omittingEmptySubsequences: true)
        return all.filter { endpoint in
            let pattern = endpoint.routerPath.split(separator: "/")
            if pattern.last == "**" { return segments.count >= pattern.count && Array(segments.prefix(pattern.count - 1)) == Array(pattern.dropLast()) }
            return segments == pattern
        }.map(\.method)
    }
}
