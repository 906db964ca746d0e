import Foundation
import XCTest

/// The committed OpenAPI document (Sources/M3Server/openapi.json) and a validator for
/// the JSON Schema subset it uses: $ref, type (one or several), enum, required,
/// properties, additionalProperties (false or a schema), items, minimum, maximum,
/// minLength, minItems, pattern (ICU regular expressions read ECMAScript's `\uXXXX` alike).
final class OpenAPI: Sendable {
    static let shared: OpenAPI = {
        let url = repositoryRoot.appendingPathComponent("Sources/M3Server/openapi.json")
        do { return OpenAPI(document: try JSON.parse(Data(contentsOf: url))) } catch { fatalError("cannot read \(url.path): \(error)") }
    }()

    let document: JSON

    init(document: JSON) { self.document = document }

    struct Operation {
        let method: String     // upper case
        let path: String       // template, e.g. /documents/{id}
        let spec: JSON
    }

    var operations: [Operation] {
        var out: [Operation] = []
        for (path, item) in document["paths"]?.object ?? [:] {
            for (method, op) in item.object ?? [:] where ["get", "post", "put", "delete", "patch"].contains(method) {
                out.append(Operation(method: method.uppercased(), path: path, spec: op))
            }
        }
        return out.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

    /// The operation a request path falls under. A `{param}` as the last segment takes the
    /// rest of the path (document ids may hold slashes).
    func operation(method: String, path requestPath: String) -> Operation? {
        let path = requestPath.split(separator: "?", maxSplits: 1).first.map(String.init) ?? requestPath
        let segments = path.split(separator: "/")
        return operations.first { op in
            guard op.method == method.uppercased() else { return false }
            let pattern = op.path.split(separator: "/")
            if let last = pattern.last, last.hasPrefix("{") {
                return segments.count >= pattern.count && zip(pattern.dropLast(), segments).allSatisfy { $0 == $1 || $0.hasPrefix("{") }
            }
            return pattern.count == segments.count && zip(pattern, segments).allSatisfy { $0 == $1 || $0.hasPrefix("{") }
        }
    }

    /// Ways a response breaks the document; empty when it conforms (or the route is not in it).
    func problems(method: String, path: String, result: HTTPResult) -> [String] {
        guard let op = operation(method: method, path: path) else { return [] }
        guard let response = op.spec["responses"]?[String(result.status)] ?? op.spec["responses"]?["default"] else {
            return ["status \(result.status) is not documented for \(op.method) \(op.path)"]
        }
        guard let content = response["content"]?.object else { return [] }
        let mediaType = (result.header("Content-Type") ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[mediaType] else {
            return ["content type \"\(mediaType)\" is not one of \(content.keys.sorted())"]
        }
        guard mediaType == "application/json", let schema = media["schema"] else { return [] }
        guard let body = result.json else { return ["the body is not JSON"] }
        return validate(body, schema, at: "body")
    }

    func schema(named name: String) -> JSON {
        document["components"]?["schemas"]?[name] ?? .null
    }

    func resolve(_ schema: JSON) -> JSON {
        guard let ref = schema["$ref"]?.string else { return schema }
        let prefix = "#/components/schemas/"
        precondition(ref.hasPrefix(prefix), "unsupported $ref \(ref)")
        return resolve(self.schema(named: String(ref.dropFirst(prefix.count))))
    }

    func validate(_ value: JSON, _ schema: JSON, at location: String) -> [String] {
        let schema = resolve(schema)
        var problems: [String] = []
        if let type = schema["type"] {
            let types = type.array?.compactMap(\.string) ?? [type.string ?? ""]
            guard types.contains(where: { Self.matches(value, type: $0) }) else {
                return ["\(location): \(value) is not of type \(types.joined(separator: " or "))"]
            }
        }
        if let options = schema["enum"]?.array, !options.contains(value) {
            problems.append("\(location): \(value) is not one of \(options)")
        }
        if case .number(let n) = value {
            if let min = schema["minimum"]?.number, n < min { problems.append("\(location): \(n) < minimum \(min)") }
            if let max = schema["maximum"]?.number, n > max { problems.append("\(location): \(n) > maximum \(max)") }
        }
        if case .string(let s) = value, let min = schema["minLength"]?.int, s.count < min {
            problems.append("\(location): shorter than \(min) characters")
        }
        if case .string(let s) = value, let pattern = schema["pattern"]?.string, !Self.matches(s, pattern: pattern) {
            problems.append("\(location): does not match the pattern \(pattern)")
        }
        if case .array(let items) = value {
            if let min = schema["minItems"]?.int, items.count < min { problems.append("\(location): fewer than \(min) items") }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { problems += validate(item, itemSchema, at: "\(location)[\(i)]") }
            }
        }
        if case .object(let fields) = value {
            let properties = schema["properties"]?.object ?? [:]
            for key in schema["required"]?.array?.compactMap(\.string) ?? [] where fields[key] == nil {
                problems.append("\(location): required field \"\(key)\" is missing")
            }
            for (key, field) in fields {
                if let p = properties[key] {
                    problems += validate(field, p, at: "\(location).\(key)")
                } else if let extra = schema["additionalProperties"] {
                    if extra == .bool(false) { problems.append("\(location): field \"\(key)\" is not in the schema") }
                    else if extra != .bool(true) { problems += validate(field, extra, at: "\(location).\(key)") }
                }
            }
        }
        return problems
    }

    /// JSON Schema patterns are unanchored: a match anywhere in the string counts.
    static func matches(_ text: String, pattern: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    static func matches(_ value: JSON, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number):
            return true
        case ("integer", .number(let n)):
            return n == n.rounded()
        default:
            return false
        }
    }
}
