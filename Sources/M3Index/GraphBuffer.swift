#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for the graph's two large per-slot buffers (rows, layer-0 lists). A buffer an
/// open fills whole (`populate`: the loader's exact reservation, ~110 MB for a 100k-slot
/// int8 graph) is mapped with MAP_POPULATE on Linux, so the kernel faults its pages in one
/// call instead of ~27k page faults as the rows arrive (CPU of faulting 110 MB, median of
/// 9: 47 ms against 58). Transparent huge pages (MADV_HUGEPAGE) measured 23 ms at the
/// median but with stalls of 0.1–0.9 s on this VM, and made the query slower on average,
/// so they are not used. Other buffers (a growing graph's spare capacity must not become
/// resident), and any mapping that fails, come from the allocator.
enum GraphBuffer {
    /// Below this, the allocator (a mapping per small graph would waste its page tail).
    static let mappedMinimum = 1 << 20

    /// Uninitialised memory for `byteCount` bytes, 64-byte aligned; `mapped` is what to hand
    /// back to `deallocate` (the mapped length, 0 for allocator memory).
    static func allocate(byteCount: Int, populate: Bool) -> (pointer: UnsafeMutableRawPointer, mapped: Int) {
        #if os(Linux)
        if populate && byteCount >= mappedMinimum {
            let raw = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
            if let raw, raw != UnsafeMutableRawPointer(bitPattern: -1) { return (raw, byteCount) }
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
