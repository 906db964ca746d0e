import CChecksums
import M3Model

/// The entries of a zip archive (DOCX, ODT, EPUB) held in memory, inflated on demand
/// through zlib. The archive's structure is checked by M3Model's ZipArchive (the reader of
/// torch checkpoints); here each entry is bounded by its declared size, the total by
/// `limits.maxTextBytes`, and checked against its CRC-32.
struct ZipReader {
    private let bytes: [UInt8]
    private let archive: ZipArchive
    private let limits: ExtractionLimits
    private let budget: Budget

    /// What all entries of one archive may inflate to together.
    private final class Budget {
        var remaining: Int
        init(_ n: Int) { remaining = n }
    }

    init(_ bytes: [UInt8], limits: ExtractionLimits) throws {
        self.bytes = bytes
        self.limits = limits
        self.budget = Budget(limits.maxTextBytes)
        guard bytes.count >= 4, bytes[0] == 0x50, bytes[1] == 0x4B else { throw DocumentError.malformed("not a zip archive") }
        do {
            archive = try bytes.withUnsafeBytes { try ZipArchive($0, path: "", allowDeflate: true) }
        } catch ModelError.truncated(_, let detail) {
            throw DocumentError.malformed(detail)
        } catch ModelError.invalidFormat(_, let detail) {
            throw DocumentError.malformed(detail)
        }
        guard archive.entries.count <= limits.maxEntries else {
            throw DocumentError.tooLarge("\(archive.entries.count) zip entries (at most \(limits.maxEntries))")
        }
    }

    var names: Dictionary<String, ZipArchive.Entry>.Keys { archive.entries.keys }

    /// The inflated bytes of entry `name`. Throws `DocumentError.malformed` when it is absent
    /// or corrupt, `.tooLarge` when it would exceed what is left of the budget.
    func read(_ name: String) throws -> [UInt8] {
        guard let entry = archive.entries[name] else { throw DocumentError.malformed("the archive has no \(name)") }
        guard entry.size <= budget.remaining else {
            throw DocumentError.tooLarge("\(name) expands to \(entry.size) bytes (limit \(limits.maxTextBytes) per file)")
        }
        // ZipArchive checked offset + compressedSize lies inside the file.
        let data = bytes[entry.offset ..< entry.offset + entry.compressedSize]
        var out: [UInt8]
        if entry.method == 0 {
            out = Array(data)
        } else {
            out = try inflate(data, expected: entry.size, name: name)
        }
        let crc = out.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
        guard crc == entry.crc32 else { throw DocumentError.malformed("\(name) fails its CRC-32 check (the file is corrupt)") }
        budget.remaining -= out.count
        return out
    }

    /// Raw deflate of `data` into exactly `expected` bytes: more output than declared is
    /// refused, so the declared size (already checked against the budget) bounds memory.
    private func inflate(_ data: ArraySlice<UInt8>, expected: Int, name: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected + 1)  // one spare byte detects overrun
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DocumentError.malformed("zlib cannot start inflating \(name)")
        }
        defer { inflateEnd(&stream) }
        var status: Int32 = Z_OK
        var produced = 0
        // zlib counts in UInt32; entries are bounded by maxTextBytes (< 4 GiB) here.
        guard data.count <= Int(UInt32.max), out.count <= Int(UInt32.max) else {
            throw DocumentError.tooLarge("\(name) is larger than 4 GiB")
        }
        data.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                stream.avail_in = UInt32(input.count)
                stream.next_out = output.baseAddress
                stream.avail_out = UInt32(output.count)
                status = CChecksums.inflate(&stream, Z_FINISH)
                produced = output.count - Int(stream.avail_out)
            }
        }
        guard status == Z_STREAM_END else {
            if produced > expected { throw DocumentError.malformed("\(name) inflates past its declared \(expected) bytes") }
            throw DocumentError.malformed("\(name) is not valid deflate data (zlib status \(status))")
        }
        guard produced == expected else {
            throw DocumentError.malformed("\(name) inflates to \(produced) bytes, not its declared \(expected)")
        }
        out.removeLast()
        return out
    }
}
