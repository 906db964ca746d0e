#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for the graph's two large per-slot buffers (rows, layer-0 lists). From 2 MB on it
/// is mapped anonymously on a 2 MB boundary and advised to use transparent huge pages
/// (Linux, THP in `madvise` mode): a fresh 100k-slot int8 graph is ~110 MB, which in 4 KB
/// pages cost ~27k page faults on every open; in 2 MB pages it takes ~55. Smaller buffers,
/// and any mapping that fails, come from the allocator as before.
enum GraphBuffer {
    static let hugePage = 2 << 20

    /// Uninitialised memory for `byteCount` bytes, 64-byte aligned; `mapped` is what to hand
    /// back to `deallocate` (the mapped length, 0 for allocator memory).
    static func allocate(byteCount: Int) -> (pointer: UnsafeMutableRawPointer, mapped: Int) {
        #if os(Linux)
        if byteCount >= hugePage {
            let length = (byteCount + hugePage - 1) / hugePage * hugePage
            // Over-map by one huge page so the buffer can start on a 2 MB boundary, then
            // give back the slack on either side.
            let raw = mmap(nil, length + hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if let raw, raw != UnsafeMutableRawPointer(bitPattern: -1) {
                let address = UInt(bitPattern: raw)
                let aligned = (address + UInt(hugePage) - 1) / UInt(hugePage) * UInt(hugePage)
                let head = Int(aligned - address)
                if head > 0 { munmap(raw, head) }
                let tail = hugePage - head
                if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(length)), tail) }
                let p = UnsafeMutableRawPointer(bitPattern: aligned)!
                _ = madvise(p, length, MADV_HUGEPAGE)  // advice only: 4 KB pages still work
                return (p, length)
            }
        }
        #endif
        return (.allocate(byteCount: byteCount, alignment: 64), 0)
    }

    static func deallocate(_ p: UnsafeMutableRawPointer, mapped: Int) {
        #if os(Linux)
        if mapped > 0 {
            munmap(p, mapped)
            return
        }
        #endif
        p.deallocate()
    }
}
