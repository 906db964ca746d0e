import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Around every route (and the not-found responder): turns errors into JSON error
/// responses, counts and times requests, logs one line per request with its id, and
/// returns the id in `X-Request-ID` so a client can quote it.
struct APIMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: ServerMetrics

    static let requestIDField = HTTPField.Name("X-Request-ID")!
    static let knownMethods: Set<String> = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        metrics.inFlight.increment()
        defer { metrics.inFlight.decrement() }
        var response: Response
        var problem: String?
        do {
            response = try await next(request, context)
        } catch {
            let apiError = APIError.from(error, request: request)
            if apiError.status.code >= 500 && apiError.status != .serviceUnavailable {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            }
            if apiError.status == .serviceUnavailable, !apiError.message.contains("request bodies") {
                metrics.rejected(request.uri.path == "/search" ? "search" : "write")
            }
            response = apiError.response
            problem = apiError.message
        }
        response.headers[Self.requestIDField] = context.id
        let duration = ContinuousClock.now - start
        let route = Endpoint.label(routerPath: context.endpointPath)
        let method = Self.knownMethods.contains(request.method.rawValue) ? request.method.rawValue : "other"
        metrics.request(route: route, method: method, status: response.status.code, duration: duration)
        var metadata: Logger.Metadata = [
            "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
            "duration_ms": "\(String(format: "%.2f", Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000))",
        ]
        if let problem { metadata["error"] = "\(problem)" }
        context.logger.info("request", metadata: metadata)
        return response
    }
}
