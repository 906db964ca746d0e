// Whole-file checks of weights that parsing alone cannot make: every value finite, every
// zip entry equal to its CRC-32. They read every byte (seconds for 2.3 GB), so BGEM3 runs
// them once per version of a file and remembers the result in the model cache.
import CChecksums
import Foundation

extension StateDict {
    /// Throws `ModelError.nonFiniteWeight` naming the first tensor (by name) that holds a
    /// NaN or an infinity, and the element.
    public func verifyFinite() throws {
        let sorted = sortedTensors
        let names = sorted.map(\.name), tensors = sorted.map(\.tensor)
        // Blocks of ≤ 4M elements over every tensor, spread over the cores.
        var jobs: [(tensor: Int, start: Int, count: Int)] = []
        let block = 1 << 22
        for (i, t) in tensors.enumerated() {
            var start = 0
            while start < t.count {
                jobs.append((i, start, min(block, t.count - start)))
                start += block
            }
        }
        var firstBad = [Int](repeating: -1, count: jobs.count)
        let shared = Shared((jobs: jobs, tensors: tensors))
        firstBad.withUnsafeMutableBufferPointer { out in
            let slots = Shared(out)
            DispatchQueue.concurrentPerform(iterations: jobs.count) { j in
                let job = shared.value.jobs[j]
                let tensor = shared.value.tensors[job.tensor]
                withExtendedLifetime(tensor) {
                    let values = UnsafeRawPointer(tensor.pointer + job.start).assumingMemoryBound(to: UInt32.self)
                    if let bad = firstNonFinite(values, count: job.count) { slots.value[j] = job.start + bad }
                }
            }
        }
        if let j = firstBad.firstIndex(where: { $0 >= 0 }) {
            throw ModelError.nonFiniteWeight(path: path, name: names[jobs[j].tensor], index: firstBad[j])
        }
    }
}

/// The index of the first NaN or infinity among `count` float32 bit patterns, or nil.
/// The common case (all finite) is one branch-free max over the block, which vectorises.
private func firstNonFinite(_ bits: UnsafePointer<UInt32>, count: Int) -> Int? {
    var largest: UInt32 = 0
    for i in 0..<count { largest = max(largest, bits[i] & 0x7FFF_FFFF) }
    guard largest >= 0x7F80_0000 else { return nil }
    return (0..<count).first { bits[$0] & 0x7F80_0000 == 0x7F80_0000 }
}

extension WeightFile {
    /// For a torch zip checkpoint, checks every entry's bytes against the CRC-32 in its
    /// central directory header; safetensors have no checksums (nothing to do). Throws
    /// `ModelError.checksumMismatch` naming the entry.
    static func verifyChecksums(_ file: MappedFile) throws {
        guard ZipArchive.looksLike(file.bytes) else { return }
        let archive = try ZipArchive(file.bytes, path: file.path)
        let entries = archive.entries.sorted { $0.key < $1.key }
        // Entries in blocks of 16 MiB, each block's CRC on any core, combined per entry.
        let block = 16 << 20
        var jobs: [(entry: Int, offset: Int, length: Int)] = []
        for (i, (_, e)) in entries.enumerated() {
            var at = 0
            repeat {
                jobs.append((i, e.offset + at, min(block, e.size - at)))
                at += block
            } while at < e.size
        }
        var crcs = [UInt32](repeating: 0, count: jobs.count)
        let shared = Shared((jobs: jobs, bytes: file.bytes))
        crcs.withUnsafeMutableBufferPointer { out in
            let slots = Shared(out)
            DispatchQueue.concurrentPerform(iterations: jobs.count) { j in
                let job = shared.value.jobs[j]
                // In bounds: ZipArchive checked every entry lies inside the file.
                let bytes = UnsafeRawBufferPointer(rebasing: shared.value.bytes[job.offset ..< job.offset + job.length])
                slots.value[j] = ContentHash.crc32(bytes)
            }
        }
        var j = 0
        for (i, (name, entry)) in entries.enumerated() {
            var crc: UInt = 0
            var first = true
            while j < jobs.count, jobs[j].entry == i {
                crc = first ? UInt(crcs[j]) : CChecksums.crc32_combine(crc, UInt(crcs[j]), off_t(jobs[j].length))
                first = false
                j += 1
            }
            guard UInt32(truncatingIfNeeded: crc) == entry.crc32 else {
                throw ModelError.checksumMismatch(path: file.path, entry: name)
            }
        }
    }
}
