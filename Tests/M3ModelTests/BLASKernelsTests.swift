import COpenBLAS
@testable import M3Model
import XCTest

/// When m3search restarts itself under OPENBLAS_CORETYPE (BLASKernels.swift).
final class BLASKernelsTests: XCTestCase {
    func testRestartsOnlyFromAGenericCoreToOneTheCPURuns() {
        let none: [String: String] = [:]
        // Debian 12's OpenBLAS on an Intel Xeon model 207 (AVX-512 + BF16) picks Prescott.
        XCTAssertEqual(BLASKernels.betterCoreType(coreName: "Prescott", blasClass: 2, environment: none), "SKYLAKEX")
        XCTAssertEqual(BLASKernels.betterCoreType(coreName: "Nehalem", blasClass: 2, environment: none), "SKYLAKEX")
        XCTAssertEqual(BLASKernels.betterCoreType(coreName: "Sandybridge", blasClass: 1, environment: none), "HASWELL")
        // No better set on this CPU.
        XCTAssertNil(BLASKernels.betterCoreType(coreName: "Prescott", blasClass: 0, environment: none))
        // OpenBLAS knew the CPU: keep its choice, even where another set would also run.
        for core in ["Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen"] {
            XCTAssertNil(BLASKernels.betterCoreType(coreName: core, blasClass: 2, environment: none), core)
        }
        // Set by the user, or by the restart itself: never restart (again).
        XCTAssertNil(BLASKernels.betterCoreType(coreName: "Prescott", blasClass: 2, environment: ["OPENBLAS_CORETYPE": "Prescott"]))
    }

    func testTheLoadedLibraryNamesItsCore() {
        XCTAssertFalse(BLASKernels.coreName.isEmpty)
        XCTAssertNotEqual(BLASKernels.coreName, "unknown")
    }

    /// After the workers are stopped (what a one-shot query does first), OpenBLAS runs on
    /// one thread and its sgemm still computes what a plain triple loop does, on a size it
    /// would otherwise split across threads.
    func testStoppedWorkersLeaveSgemmCorrectOnOneThread() {
        BLASKernels.stopWorkerThreads()
        XCTAssertEqual(openblas_get_num_threads(), 1)
        let m = 96, n = 80, k = 256
        let a = (0 ..< m * k).map { Float(($0 * 37) % 19) / 19 - 0.5 }
        let b = (0 ..< k * n).map { Float(($0 * 11) % 23) / 23 - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        for i in 0 ..< m {
            for j in 0 ..< n {
                var reference: Double = 0
                for p in 0 ..< k { reference += Double(a[i * k + p]) * Double(b[p * n + j]) }
                XCTAssertEqual(Double(c[i * n + j]), reference, accuracy: 1e-3, "(\(i), \(j))")
            }
        }
        BLASKernels.stopWorkerThreads()  // twice is harmless
        XCTAssertEqual(openblas_get_num_threads(), 1)
    }
}
