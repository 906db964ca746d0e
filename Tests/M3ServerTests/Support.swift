import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import M3Search
import M3Server
import XCTest

// Test support: a server on a free loopback port over a temporary index, a real HTTP
// client (URLSession, libcurl underneath: nothing shared with the server's NIO stack),
// and checks of every response against the committed OpenAPI document.

func fixture(_ path: String) -> String {
    repositoryRoot.appendingPathComponent("Fixtures").appendingPathComponent(path).path
}

var repositoryRoot: URL {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        url = url.deletingLastPathComponent()
    }
    return url
}

/// The tiny random-weight model, loaded once for the whole test run.
enum TinyModel {
    nonisolated(unsafe) private static var loaded: BGEM3?
    private static let lock = NSLock()
    static func get() throws -> BGEM3 {
        lock.lock()
        defer { lock.unlock() }
        if let loaded { return loaded }
        let m = try BGEM3(folder: fixture("models/tiny-safetensors"))
        loaded = m
        return m
    }
}

/// Documents from the committed corpus (Python documentation topics), `count` of them,
/// cut to `characters` each, with ids "corpus/<file>".
func corpusDocuments(_ count: Int, characters: Int = 1500, idPrefix: String = "corpus/") throws -> [DocumentInput] {
    let dir = fixture("corpus")
    let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != "LICENSE.md" }.sorted()
    return try names.prefix(count).map { name in
        let text = try String(contentsOfFile: (dir as NSString).appendingPathComponent(name), encoding: .utf8)
        return DocumentInput(id: idPrefix + name, text: String(text.prefix(characters)), metadata: ["source": name])
    }
}

func temporaryDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-server-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// An `M3Server` running in this process on 127.0.0.1 with port 0 (the kernel picks a
/// free one), over a new index holding `documents`.
final class TestServer: @unchecked Sendable {
    let index: SearchIndex
    let indexPath: String
    let server: M3Server
    let port: Int
    let client: APIClient
    private let task: Task<Void, any Error>
    private let directory: URL

    static func start(documents: [DocumentInput] = [], readOnly: Bool = false,
                      configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("server.m3index").path
        let index = try SearchIndex(path: path, model: try TinyModel.get(), options: IndexOptions(maxLength: 64, overlap: 8))
        if !documents.isEmpty { try await index.add(documents) }
        var configuration = ServerConfiguration()
        configuration.port = 0
        configure(&configuration)
        var logger = Logger(label: "m3search-test")
        logger.logLevel = .warning
        let server = M3Server(index: index, configuration: configuration, readOnly: readOnly, modelLoadSeconds: 0.25, indexLoadSeconds: 0.125, logger: logger)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let task = Task {
            defer { continuation.finish() }
            try await server.run(gracefulShutdownSignals: []) { _, port in continuation.yield(port) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            _ = try await task.value
            throw XCTSkip("the server stopped before listening")
        }
        return TestServer(index: index, indexPath: path, server: server, port: port, task: task, directory: dir)
    }

    private init(index: SearchIndex, indexPath: String, server: M3Server, port: Int, task: Task<Void, any Error>, directory: URL) {
        self.index = index
        self.indexPath = indexPath
        self.server = server
        self.port = port
        self.task = task
        self.directory = directory
        self.client = APIClient(base: URL(string: "http://127.0.0.1:\(port)")!)
    }

    /// Graceful shutdown; waits until `run` has returned (the index is checkpointed).
    func stop() async throws {
        await server.shutdown()
        try await task.value
    }

    func removeFiles() { try? FileManager.default.removeItem(at: directory) }
}

/// A JSON value decoded strictly (a number is never a Boolean), for checks against schemas.
indirect enum JSON: Decodable, Equatable, CustomStringConvertible {
    case null, bool(Bool), number(Double), string(String), array([JSON]), object([String: JSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSON].self)) }
    }

    static func parse(_ data: Data) throws -> JSON { try JSONDecoder().decode(JSON.self, from: data) }

    subscript(key: String) -> JSON? { if case .object(let o) = self { return o[key] } else { return nil } }
    subscript(i: Int) -> JSON? { if case .array(let a) = self, a.indices.contains(i) { return a[i] } else { return nil } }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var number: Double? { if case .number(let n) = self { return n } else { return nil } }
    var array: [JSON]? { if case .array(let a) = self { return a } else { return nil } }
    var object: [String: JSON]? { if case .object(let o) = self { return o } else { return nil } }
    var int: Int? { number.flatMap { $0 == $0.rounded() ? Int($0) : nil } }

    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .number(let n): return "\(n)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!)" }.joined(separator: ",") + "}"
        }
    }

    /// Foundation object form, to send as a request body.
    var foundation: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? Int(n) as Any : n
        case .string(let s): return s
        case .array(let a): return a.map(\.foundation)
        case .object(let o): return o.mapValues(\.foundation)
        }
    }
}

struct HTTPResult {
    let status: Int
    let headers: [String: String]
    let body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: JSON? { try? JSON.parse(body) }
    /// The message of an `{"error": …}` body.
    var error: String? { json?["error"]?.string }
    func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
}

/// A real HTTP client over URLSession. Every response to a route the OpenAPI document
/// describes is checked against it: the status must be documented for that operation,
/// the content type must match, and a JSON body must satisfy the documented schema.
final class APIClient: Sendable {
    let base: URL
    let session: URLSession

    init(base: URL) {
        self.base = base
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.timeoutIntervalForRequest = 120
        session = URLSession(configuration: configuration)
    }

    @discardableResult
    func send(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, headers: [String: String] = [:],
              file: StaticString = #filePath, line: UInt = #line) async throws -> HTTPResult {
        var request = URLRequest(url: URL(string: base.absoluteString + path)!)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { headers["\(k)"] = "\(v)" }
        let result = HTTPResult(status: http.statusCode, headers: headers, body: data)
        for problem in OpenAPI.shared.problems(method: method, path: path, result: result) {
            XCTFail("\(method) \(path) → \(result.status): \(problem)\nbody: \(result.text.prefix(500))", file: file, line: line)
        }
        return result
    }

    @discardableResult
    func search(_ body: [String: Any], headers: [String: String] = [:],
                file: StaticString = #filePath, line: UInt = #line) async throws -> HTTPResult {
        try await send("POST", "/search", json: body, headers: headers, file: file, line: line)
    }
}

/// Prometheus text format: `name{a="b",…} value` samples.
struct PrometheusText {
    struct Sample { let name: String; let labels: [String: String]; let value: Double }
    let samples: [Sample]

    init(_ text: String) {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let open = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = String(series[..<open])
                let inner = series[series.index(after: open) ..< series.index(before: series.endIndex)]
                // Label values here never hold commas or quotes.
                for pair in inner.split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { labels[String(kv[0])] = String(kv[1].dropFirst().dropLast()) }
                }
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        self.samples = samples
    }

    /// The sample with this name whose labels include `labels`; 0 when absent (a counter never incremented).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.first { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }?.value ?? 0
    }

    func all(_ name: String) -> [Sample] { samples.filter { $0.name == name } }
}
