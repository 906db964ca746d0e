import Foundation
import M3Search
@testable import M3Server
import XCTest

/// The committed OpenAPI document and the server agree: the same operations; every
/// operation's example request succeeds with a documented status and a body matching
/// the documented schema (APIClient checks every response of every test this way); the
/// request schemas' required fields, closed field sets, ranges and enums are what the
/// server enforces.
final class OpenAPIConformanceTests: XCTestCase {
    let spec = OpenAPI.shared

    func testOperationsAreTheServedRoutes() {
        XCTAssertEqual(spec.document["openapi"]?.string?.hasPrefix("3."), true)
        XCTAssertEqual(Set(spec.operations.map { "\($0.method) \($0.path)" }), Set(Endpoint.all.map { "\($0.method) \($0.path)" }))
        for op in spec.operations {
            XCTAssertNotNil(op.spec["responses"]?["200"], "\(op.method) \(op.path) documents its success")
        }
    }

    func testExamplesAndRequestSchemas() async throws {
        let s = try await TestServer.start(documents: try corpusDocuments(5))
        defer { s.removeFiles() }

        // Every operation, with the document's own example request.
        for op in spec.operations {
            var path = op.path
            for parameter in op.spec["parameters"]?.array ?? [] where parameter["in"]?.string == "path" {
                let name = parameter["name"]!.string!, example = parameter["example"]!.string!
                if op.method == "DELETE" {   // something to delete
                    let added = try await s.client.send("POST", "/documents", json: ["documents": [["id": example, "text": "to be deleted"]]])
                    XCTAssertEqual(added.status, 200, added.text)
                }
                path = path.replacingOccurrences(of: "{\(name)}", with: example.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
            }
            let example = op.spec["requestBody"]?["content"]?["application/json"]?["example"]
            let r = try await s.client.send(op.method, path, json: example?.foundation)
            XCTAssertTrue((200..<300).contains(r.status), "\(op.method) \(op.path) with its example: \(r.status) \(r.text)")
        }

        // POST /search: the example uses every field, so every documented field is accepted.
        let searchSchema = spec.schema(named: "SearchRequest")
        let example = spec.operation(method: "POST", path: "/search")!.spec["requestBody"]!["content"]!["application/json"]!["example"]!
        XCTAssertEqual(Set(example.object!.keys), Set(searchSchema["properties"]!.object!.keys))
        try await checkRequestSchema(searchSchema, example: example, path: "/search", server: s)

        // POST /documents and its nested Document and Weights objects.
        let documentsExample = spec.operation(method: "POST", path: "/documents")!.spec["requestBody"]!["content"]!["application/json"]!["example"]!
        try await checkRequestSchema(spec.schema(named: "DocumentsRequest"), example: documentsExample, path: "/documents", server: s)
        let document = documentsExample["documents"]![0]!
        try await checkRequestSchema(spec.schema(named: "Document"), example: document, path: "/documents", server: s) { .object(["documents": .array([$0])]) }
        try await checkRequestSchema(spec.schema(named: "Weights"), example: example["weights"]!, path: "/search", server: s) {
            .object(["query": .string("weights"), "weights": $0])
        }
        try await checkRequestSchema(spec.schema(named: "Filter"), example: example["filter"]!, path: "/search", server: s) {
            .object(["query": .string("filter"), "filter": $0])
        }
        try await s.stop()
    }

    /// For one object schema: dropping a required field is 400 naming it, dropping an
    /// optional one is fine, an unknown field is 400 naming it (additionalProperties:
    /// false), integer bounds are inclusive and enforced, every enum value is accepted
    /// and any other refused. `wrap` embeds the object in a full request body.
    private func checkRequestSchema(_ schema: JSON, example: JSON, path: String, server s: TestServer,
                                    wrap: (JSON) -> JSON = { $0 }) async throws {
        let schema = spec.resolve(schema)
        let fields = example.object!
        let required = Set(schema["required"]?.array?.compactMap(\.string) ?? [])
        func send(_ object: [String: JSON]) async throws -> HTTPResult {
            try await s.client.send("POST", path, json: wrap(.object(object)).foundation)
        }
        XCTAssertEqual(schema["additionalProperties"], .bool(false), "request objects are closed")
        let unknown = try await send(fields.merging(["zz_unknown": .bool(true)]) { $1 })
        XCTAssertEqual(unknown.status, 400)
        XCTAssertTrue(unknown.error?.contains("zz_unknown") ?? false, unknown.text)

        for (name, property) in schema["properties"]?.object ?? [:] {
            var without = fields
            without[name] = nil
            let r = try await send(without)
            if required.contains(name) {
                XCTAssertEqual(r.status, 400, "without required \(name)")
                XCTAssertTrue(r.error?.contains(name) ?? false, r.text)
            } else if !(schema["minProperties"] != nil) {
                XCTAssertTrue((200..<300).contains(r.status), "without optional \(name): \(r.text)")
            }
            let property = spec.resolve(property)
            let types = property["type"]?.array?.compactMap(\.string) ?? [property["type"]?.string ?? ""]
            if types.contains("integer") {
                if let max = property["maximum"]?.int {
                    let atMax = try await send(fields.merging([name: .number(Double(max))]) { $1 })
                    XCTAssertTrue((200..<300).contains(atMax.status), "\(name) = maximum \(max): \(atMax.text)")
                    let over = try await send(fields.merging([name: .number(Double(max + 1))]) { $1 })
                    XCTAssertEqual(over.status, 400, "\(name) = \(max + 1)")
                    XCTAssertTrue(over.error?.contains(name) ?? false, over.text)
                }
                if let min = property["minimum"]?.int {
                    let atMin = try await send(fields.merging([name: .number(Double(min))]) { $1 })
                    XCTAssertTrue((200..<300).contains(atMin.status), "\(name) = minimum \(min): \(atMin.text)")
                    let under = try await send(fields.merging([name: .number(Double(min - 1))]) { $1 })
                    XCTAssertEqual(under.status, 400, "\(name) = \(min - 1)")
                }
                let fraction = try await send(fields.merging([name: .number(1.5)]) { $1 })
                XCTAssertEqual(fraction.status, 400, "\(name) = 1.5")
            }
            if types.contains("number"), let min = property["minimum"]?.number {
                let under = try await send(fields.merging([name: .number(min - 0.5)]) { $1 })
                XCTAssertEqual(under.status, 400, "\(name) below its minimum")
            }
            if types.contains("number"), let max = property["maximum"]?.number {
                let atMax = try await send(fields.merging([name: .number(max)]) { $1 })
                XCTAssertTrue((200..<300).contains(atMax.status), "\(name) = maximum \(max): \(atMax.text)")
                let over = try await send(fields.merging([name: .number(max * 1.5)]) { $1 })
                XCTAssertEqual(over.status, 400, "\(name) above its maximum")
            }
            if let options = property["enum"]?.array {
                for option in options {
                    let r = try await send(fields.merging([name: option]) { $1 })
                    XCTAssertTrue((200..<300).contains(r.status), "\(name) = \(option): \(r.text)")
                }
                let other = try await send(fields.merging([name: .string("not-an-option")]) { $1 })
                XCTAssertEqual(other.status, 400, "\(name) outside its enum")
            }
            if !types.contains("null") {
                let null = try await send(fields.merging([name: .null]) { $1 })
                XCTAssertEqual(null.status, 400, "\(name) = null is not allowed by the document")
            }
        }
    }
}
