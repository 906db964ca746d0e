import Foundation
import HTTPTypes
import Hummingbird
import M3Search
import NIOCore

/// An error the API answers with a status and `{"error": "<message>"}`.
struct APIError: Error, CustomStringConvertible {
    var status: HTTPResponse.Status
    var message: String
    var headers: HTTPFields = [:]

    var description: String { message }

    static func badRequest(_ message: String) -> APIError { APIError(status: .badRequest, message: message) }

    /// The JSON error response.
    var response: Response {
        var out = JSONWriter(reserving: message.utf8.count + 16)
        out.raw("{\"error\":")
        out.string(message)
        out.raw("}")
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: out.bytes)))
    }

    /// Maps anything a handler or the router throws to a status and a message that says
    /// what to do; unexpected errors are 500 and are logged by the caller.
    static func from(_ error: any Error, request: Request) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case is NIOTooManyBytesError:
            return APIError(status: .contentTooLarge, message: "the request body is larger than the server's limit (--max-body-bytes)")
        case let e as M3SearchError:
            switch e.kind {
            case .invalidArgument:
                return .badRequest(e.message)
            // Another writer (`m3search index`, `import`) holds the lock: retry later.
            case .locked:
                return APIError(status: .conflict, message: e.message)
            case .readOnly:
                return APIError(status: .forbidden, message: e.message)
            // Nothing was committed; the index is as it was before the request.
            case .diskFull:
                return APIError(status: .init(code: 507, reasonPhrase: "Insufficient Storage"), message: e.message)
            default:
                return APIError(status: .internalServerError, message: "internal error: \(e)")
            }
        case let e as HTTPError:
            switch e.status {
            case .notFound:
                let allowed = Endpoint.methods(matching: request.uri.path)
                if !allowed.isEmpty {
                    var error = APIError(status: .methodNotAllowed,
                                         message: "\(request.method) is not allowed on \(request.uri.path); use \(allowed.joined(separator: " or "))")
                    error.headers[.allow] = allowed.joined(separator: ", ")
                    return error
                }
                return APIError(status: .notFound, message: "no such endpoint: \(request.method) \(request.uri.path) (see the OpenAPI document)")
            default:
                return APIError(status: e.status, message: e.body ?? e.status.reasonPhrase)
            }
        case let e as any HTTPResponseError:
            return APIError(status: e.status, message: e.status.reasonPhrase)
        default:
            return APIError(status: .internalServerError, message: "internal error: \(error)")
        }
    }
}
