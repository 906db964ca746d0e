// A minimal reader for zip archives, located through the central directory and read in
// place: torch.save's (stored entries only) and, with `allowDeflate`, office documents and
// EPUBs (M3Documents inflates their deflated entries, bounded by the declared sizes).
//
// Layout (PKWARE APPNOTE.TXT), all integers little-endian:
//   per entry:  local header   "PK\3\4"  30 bytes + name + extra, then the entry's bytes
//   per entry:  central header "PK\1\2"  46 bytes + name + extra + comment
//   optional:   zip64 end of central directory record  "PK\6\6" (56 bytes + extensible data)
//               zip64 end of central directory locator "PK\6\7" (20 bytes)
//   always:     end of central directory record        "PK\5\6" (22 bytes + comment ≤ 65535)
// Sizes and offsets that do not fit 32 bits are 0xFFFFFFFF in the headers, with the real
// values in a zip64 extra field (id 0x0001) of the central header. torch writes the zip64
// records for every file.

package struct ZipArchive {
    /// Where an entry's bytes are in the file.
    package struct Entry: Sendable {
        /// The first byte of the entry's (possibly compressed) data.
        package let offset: Int
        /// The uncompressed size, from the central directory.
        package let size: Int
        /// Bytes of data in the file: `size` for stored entries.
        package let compressedSize: Int
        /// 0: stored, 8: deflated (the only methods accepted).
        package let method: Int
        /// The CRC-32 of the entry's uncompressed bytes, from the central directory.
        package let crc32: UInt32
    }

    /// Entries by name (e.g. "archive/data/0").
    package let entries: [String: Entry]

    package static func looksLike(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.readLE(UInt32.self, at: 0) == localSignature
    }

    private static let localSignature: UInt32 = 0x0403_4B50
    private static let centralSignature: UInt32 = 0x0201_4B50
    private static let endSignature: UInt32 = 0x0605_4B50
    private static let zip64EndSignature: UInt32 = 0x0606_4B50
    private static let zip64LocatorSignature: UInt32 = 0x0706_4B50

    /// Throws `ModelError.truncated` / `.invalidFormat` naming what is wrong. Without
    /// `allowDeflate` only stored entries are accepted (what torch writes).
    package init(_ bytes: UnsafeRawBufferPointer, path: String, allowDeflate: Bool = false) throws {
        func invalid(_ detail: String) -> ModelError { .invalidFormat(path: path, detail: "zip archive: " + detail) }
        func u16(_ at: Int) throws -> Int {
            guard let v = bytes.readLE(UInt16.self, at: at) else { throw invalid("header at byte \(at) runs past the end of the file") }
            return Int(v)
        }
        func u32(_ at: Int) throws -> Int {
            guard let v = bytes.readLE(UInt32.self, at: at) else { throw invalid("header at byte \(at) runs past the end of the file") }
            return Int(v)
        }
        func u64(_ at: Int) throws -> Int {
            guard let v = bytes.readLE(UInt64.self, at: at) else { throw invalid("header at byte \(at) runs past the end of the file") }
            guard v <= UInt64(Int.max) else { throw invalid("a 64-bit size or offset at byte \(at) is out of range") }
            return Int(v)
        }

        // End of central directory: the last signature within the final 22 + 65535 bytes.
        guard let end = Self.findEnd(bytes) else {
            throw ModelError.truncated(path: path, detail: "the zip archive has no end-of-central-directory record (the file is cut short)")
        }
        var entryCount = try u16(end + 10)
        var directorySize = try u32(end + 12)
        var directoryOffset = try u32(end + 16)
        var directoryLimit = end  // the central directory must end before the records after it

        if end >= 20, bytes.readLE(UInt32.self, at: end - 20) == Self.zip64LocatorSignature {
            let record = try u64(end - 20 + 8)
            guard record <= end - 56, try u32(record) == Self.zip64EndSignature else {
                throw invalid("the zip64 locator points to byte \(record), where there is no zip64 end record")
            }
            entryCount = try u64(record + 32)
            directorySize = try u64(record + 40)
            directoryOffset = try u64(record + 48)
            directoryLimit = record
        } else if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            throw invalid("the end record defers to zip64 records that are missing")
        }
        guard directoryOffset <= directoryLimit, directorySize <= directoryLimit - directoryOffset else {
            throw invalid("the central directory (\(directorySize) bytes at \(directoryOffset)) lies outside the archive")
        }
        // Each central header takes at least 46 bytes, which bounds a hostile entry count.
        guard entryCount <= directorySize / 46 else {
            throw invalid("\(entryCount) entries cannot fit a \(directorySize)-byte central directory")
        }

        var entries: [String: Entry] = [:]
        var at = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for _ in 0..<entryCount {
            guard at <= directoryEnd - 46, try u32(at) == Self.centralSignature else {
                throw invalid("bad central directory header at byte \(at)")
            }
            let flags = try u16(at + 8), method = try u16(at + 10), crc = UInt32(try u32(at + 16))
            var compressedSize = try u32(at + 20), size = try u32(at + 24)
            let nameLength = try u16(at + 28), extraLength = try u16(at + 30), commentLength = try u16(at + 32)
            var localOffset = try u32(at + 42)
            let headerEnd = at + 46 + nameLength + extraLength + commentLength
            guard headerEnd <= directoryEnd, let nameBytes = bytes.slice(at + 46, nameLength),
                  let extra = bytes.slice(at + 46 + nameLength, extraLength) else {
                throw invalid("central directory header at byte \(at) runs past the directory")
            }
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw invalid("an entry name at byte \(at + 46) is not UTF-8")
            }
            try Self.checkName(name, invalid)

            // zip64: the real values for the fields set to 0xFFFFFFFF, in this order.
            if size == 0xFFFF_FFFF || compressedSize == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                guard var field = Self.zip64Field(extra) else { throw invalid("entry '\(name)' lacks its zip64 extra field") }
                func next() throws -> Int {
                    guard let v = field.readLE(UInt64.self, at: 0), v <= UInt64(Int.max) else {
                        throw invalid("entry '\(name)' has a short zip64 extra field")
                    }
                    field = UnsafeRawBufferPointer(rebasing: field[8...])
                    return Int(v)
                }
                if size == 0xFFFF_FFFF { size = try next() }
                if compressedSize == 0xFFFF_FFFF { compressedSize = try next() }
                if localOffset == 0xFFFF_FFFF { localOffset = try next() }
            }

            guard flags & 1 == 0 else { throw invalid("entry '\(name)' is encrypted") }
            guard method == 0 || (allowDeflate && method == 8) else {
                if allowDeflate { throw invalid("entry '\(name)' uses compression method \(method) (only stored and deflate are read)") }
                throw invalid("entry '\(name)' is compressed (method \(method)); torch.save stores entries uncompressed, "
                    + "so re-save the file with torch.save instead of re-zipping it")
            }
            guard method == 8 || compressedSize == size else {
                throw invalid("stored entry '\(name)' has compressed size \(compressedSize) ≠ size \(size)")
            }
            // The local header's name and extra lengths can differ from the central ones.
            guard localOffset <= directoryOffset - 30, try u32(localOffset) == Self.localSignature else {
                throw invalid("entry '\(name)' has no local header at byte \(localOffset)")
            }
            let dataOffset = localOffset + 30 + (try u16(localOffset + 26)) + (try u16(localOffset + 28))
            guard dataOffset <= directoryOffset, compressedSize <= directoryOffset - dataOffset else {
                throw invalid("entry '\(name)' (\(compressedSize) bytes at byte \(dataOffset)) extends past the archive's data")
            }
            guard entries.updateValue(Entry(offset: dataOffset, size: size, compressedSize: compressedSize, method: method, crc32: crc), forKey: name) == nil else {
                throw invalid("entry '\(name)' appears twice")
            }
            at = headerEnd
        }
        self.entries = entries
    }

    private static func findEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 22 else { return nil }
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        for at in stride(from: bytes.count - 22, through: lowest, by: -1)
        where bytes.readLE(UInt32.self, at: at) == endSignature {
            // The comment must end exactly at the end of the file.
            if let commentLength = bytes.readLE(UInt16.self, at: at + 20), at + 22 + Int(commentLength) == bytes.count {
                return at
            }
        }
        return nil
    }

    /// The data of the zip64 extended-information extra field (id 0x0001), if present.
    private static func zip64Field(_ extra: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var at = 0
        while let id = extra.readLE(UInt16.self, at: at), let length = extra.readLE(UInt16.self, at: at + 2) {
            guard let data = extra.slice(at + 4, Int(length)) else { return nil }
            if id == 1 { return data }
            at += 4 + Int(length)
        }
        return nil
    }

    /// Names are only looked up, never written to disk, but a name that could escape a
    /// folder (or alias another) means the archive was not written by torch.
    private static func checkName(_ name: String, _ invalid: (String) -> ModelError) throws {
        // A trailing "/" (a folder entry) is harmless; other empty components are not.
        let components = name.dropLast(name.hasSuffix("/") ? 1 : 0).split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\\"), !name.contains("\0"),
              !components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
            throw invalid("unsafe entry name '\(name)'")
        }
    }
}
