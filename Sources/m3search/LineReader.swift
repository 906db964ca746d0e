import Foundation
import M3Search

/// Reads a file line by line in 1 MiB blocks, so memory stays bounded by the longest
/// line, not the file; with `maxLineBytes`, a longer line is refused as soon as that many
/// bytes of it were read (never held whole).
struct LineReader {
    /// A line longer than the reader's limit.
    struct LineTooLong: Error {
        let lineNumber: Int
        let limit: Int
    }

    private let handle: FileHandle
    private let maxLineBytes: Int?
    private var buffer = [UInt8]()
    private var start = 0
    /// Bytes of the current line already searched for "\n" (each byte is searched once).
    private var scanned = 0
    private var atEnd = false
    private(set) var lineNumber = 0

    init(path: String, maxLineBytes: Int? = nil) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw M3SearchError(.notFound, "cannot read \(path): check the path and its permissions")
        }
        self.init(handle: handle, maxLineBytes: maxLineBytes)
    }

    init(handle: FileHandle, maxLineBytes: Int? = nil) {
        self.handle = handle
        self.maxLineBytes = maxLineBytes
    }

    /// The next line without its "\n" (and "\r"), or nil at the end of the file. Throws
    /// `LineTooLong` for a line over the limit.
    mutating func next() throws -> [UInt8]? {
        while true {
            if let nl = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                try check(nl - start)
                var line = Array(buffer[start ..< nl])
                start = nl + 1
                scanned = 0
                lineNumber += 1
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return line
            }
            scanned = buffer.count - start
            try check(scanned)
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                scanned = 0
                lineNumber += 1
                return line
            }
            buffer.removeSubrange(0 ..< start)
            start = 0
            let block = try handle.read(upToCount: 1 << 20) ?? Data()
            if block.isEmpty { atEnd = true } else { buffer.append(contentsOf: block) }
        }
    }

    /// The line being read (number `lineNumber + 1`) has `length` bytes so far.
    private func check(_ length: Int) throws {
        if let maxLineBytes, length > maxLineBytes { throw LineTooLong(lineNumber: lineNumber + 1, limit: maxLineBytes) }
    }
}
