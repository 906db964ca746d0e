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
}
