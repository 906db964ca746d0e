import Foundation
import XCTest

struct RunResult { let status: Int32; let stdout: String; let stderr: String }

/// An `m3search` child process. Its stdin, stdout and stderr are files in a scratch folder
/// (removed by `finish`), so no output size can fill a pipe and block it.
final class M3SearchChild {
    let process = Process()
    private let scratch: URL
    private let start = Date()

    /// Starts `executable` (default: the m3search binary) with `arguments`; `environment`
    /// changes the inherited variables (nil values remove them).
    init(_ arguments: [String], stdin: String = "", environment changes: [String: String?] = [:],
         currentDirectory: URL? = nil, executable: URL = m3searchBinary) throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("m3-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let input = scratch.appendingPathComponent("in")
        try Data(stdin.utf8).write(to: input)
        for name in ["out", "err"] { try Data().write(to: scratch.appendingPathComponent(name)) }
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in changes { environment[key] = value }
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardInput = try FileHandle(forReadingFrom: input)
        process.standardOutput = try FileHandle(forWritingTo: scratch.appendingPathComponent("out"))
        process.standardError = try FileHandle(forWritingTo: scratch.appendingPathComponent("err"))
        try process.run()
    }

    /// What the child wrote to stderr so far.
    var stderrSoFar: String {
        String(decoding: (try? Data(contentsOf: scratch.appendingPathComponent("err"))) ?? Data(), as: UTF8.self)
    }

    /// Seconds since the start.
    var elapsed: Double { Date().timeIntervalSince(start) }

    /// Waits for the exit and returns what it printed. After `seconds` the child is killed and
    /// the test fails: a hang must not stall the suite.
    func finish(seconds: Double? = nil) -> RunResult {
        if let seconds {
            while process.isRunning && elapsed < seconds { usleep(20_000) }
            if process.isRunning {
                process.terminate()
                XCTFail("m3search \((process.arguments ?? []).joined(separator: " ")) still ran after \(seconds) s")
            }
        }
        process.waitUntilExit()
        defer { try? FileManager.default.removeItem(at: scratch) }
        func read(_ name: String) -> String {
            String(decoding: (try? Data(contentsOf: scratch.appendingPathComponent(name))) ?? Data(), as: UTF8.self)
        }
        return RunResult(status: process.terminationStatus, stdout: read("out"), stderr: read("err"))
    }
}

func runM3Search(_ arguments: [String], stdin: String) throws -> RunResult {
    try M3SearchChild(arguments, stdin: stdin).finish()
}

/// `runM3Search` run in a given folder.
func runM3Search(_ arguments: [String], stdin: String, currentDirectory: URL) throws -> RunResult {
    try M3SearchChild(arguments, stdin: stdin, currentDirectory: currentDirectory).finish()
}

/// Runs m3search with `changes` to its environment; with `terminal`, under `script(1)`, so
/// its stdout and stderr are a pseudo-terminal (`shellPrefix` runs first in that shell).
func runM3SearchWith(_ arguments: [String], environment changes: [String: String?] = [:], terminal: Bool = false,
                     shellPrefix: String = "") throws -> RunResult {
    guard terminal else { return try M3SearchChild(arguments, environment: changes).finish() }
    func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
    let command = shellPrefix + " exec " + ([m3searchBinary.path] + arguments).map(quoted).joined(separator: " ")
    return try M3SearchChild(["-qfec", command, "/dev/null"], environment: changes,
                             executable: URL(fileURLWithPath: "/usr/bin/script")).finish()
}
