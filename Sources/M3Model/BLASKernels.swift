// OpenBLAS picks its kernel set once, when the library loads, from the CPU's model number. A
// release older than the CPU does not know the number and falls back to a generic core: Debian
// 12's OpenBLAS 0.3.21 on an Intel Xeon of model 207 (Emerald Rapids) runs its SSE3 "Prescott"
// kernels, 33–39 GFLOP/s of sgemm on 2 cores where its Skylake-X kernels reach 150–240
// (BENCHMARKS.md, "OpenBLAS's kernel choice"). Only OPENBLAS_CORETYPE, read while the library
// loads, changes the choice, so the CLI restarts itself with it set.
import CM3Kernels
import COpenBLAS
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which kernels OpenBLAS runs, and the fix when it fell back to a generic core.
///
/// ```swift
/// print(BLASKernels.coreName)              // "Prescott" on a CPU newer than the library
/// BLASKernels.restartWithBetterCoreIfNeeded()   // first thing in main(): exec's itself once
/// ```
public enum BLASKernels {
    /// The kernel set OpenBLAS chose ("Haswell", "SkylakeX", "Zen", "Prescott", …).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The generic x86-64 cores OpenBLAS falls back to for an unknown model number, none of
    /// which uses AVX2 (Sandybridge: AVX without FMA).
    static let genericCores: Set<String> = ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom",
                                            "opteron", "opteron_sse3", "barcelona", "bobcat", "sandybridge"]

    /// The OPENBLAS_CORETYPE to run instead of `coreName`: nil when OpenBLAS chose a core
    /// that uses AVX2 or better, when OPENBLAS_CORETYPE is already set (the user's choice, or
    /// a restart that did not help: never restart twice), or when the CPU has no better set.
    /// `blasClass` is `m3_cpu_blas_class()`.
    static func betterCoreType(coreName: String, blasClass: Int32, environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, genericCores.contains(coreName.lowercased()) else { return nil }
        switch blasClass {
        case 2: return "SKYLAKEX"
        case 1: return "HASWELL"
        default: return nil
        }
    }

    /// Stops OpenBLAS's worker threads. It starts them when it loads, and each spins
    /// (sched_yield) for ~2²⁸ cycles, about 0.1 s, waiting for work before it sleeps: ~13% of
    /// a one-shot int8 query's CPU samples, on a core the query could use. m3search never
    /// gives them work (every sgemm runs single-threaded, `OpenBLASThreads`), so a
    /// command that runs briefly stops them first; OpenBLAS then runs any sgemm on the
    /// calling thread. Call before other threads use OpenBLAS.
    public static func stopWorkerThreads() {
        openblas_set_num_threads(1)
        _ = blas_thread_shutdown_()
    }

    /// When OpenBLAS fell back to a generic core on a CPU that runs a better one, replaces
    /// this process with itself (same arguments) under OPENBLAS_CORETYPE, once. Call it
    /// before any output or thread that matters; it returns when there is nothing to do or
    /// the exec fails (the generic kernels are slow, not wrong). Linux only.
    public static func restartWithBetterCoreIfNeeded() {
        #if os(Linux)
        let environment = ProcessInfo.processInfo.environment
        guard let core = betterCoreType(coreName: coreName, blasClass: m3_cpu_blas_class(), environment: environment)
        else { return }
        guard setenv("OPENBLAS_CORETYPE", core, 1) == 0 else { return }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")  // exec failed: carry on as we were
        #endif
    }
}
