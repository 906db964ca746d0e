// How the index file frames an HNSW node record: the chunk id the slot holds, then the
// record's bytes (layout in HNSWIndex+Persistence.swift):
//
//   i64 id (little-endian)  ‖  u8 state  u8 level  per layer: u16 count, count × u32 slot
//
// The store keeps these bytes by slot without reading them; this is the one place that
// writes and parses the frame.

extension HNSWNodeRecord {
    /// Bytes of the id in front of each stored record.
    package static let storedIDBytes = 8

    /// The record as the index file stores it.
    package var storedBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.storedIDBytes + bytes.count)
        withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: bytes)
        return out
    }

    /// Parses the stored record of `slot`. Throws `IndexError.corrupt` when it is too short
    /// to hold the id (the record bytes themselves are checked by `HNSWIndex.Loader`).
    package init(slot: Int, stored: UnsafeRawBufferPointer) throws(IndexError) {
        guard stored.count >= Self.storedIDBytes else {
            throw .corrupt(what: "HNSW node \(slot)", detail: "its stored record is \(stored.count) bytes, "
                           + "shorter than the \(Self.storedIDBytes)-byte chunk id in front")
        }
        let id = Int64(littleEndian: stored.loadUnaligned(as: Int64.self))
        self.init(slot: slot, id: id, bytes: Array(stored[Self.storedIDBytes...]))
    }
}
