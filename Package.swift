// swift-tools-version:6.0
// m3search: BGE-M3 hybrid retrieval (dense + sparse + ColBERT) in Swift.
// Data flows one way: text → M3Tokenizer → M3Model → indexes → M3Search → m3search (CLI).
import PackageDescription

let package = Package(
    name: "m3search",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "M3Search", targets: ["M3Search"]),
        .executable(name: "m3search", targets: ["m3search"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries from Debian (apt) found through pkg-config.
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        // libsentencepiece's C++ API behind a small C header.
        .target(
            name: "CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece")]),
        // Hot loops BLAS does not cover (layer norm, GELU, softmax, conversions).
        .target(name: "CM3Kernels"),

        .target(name: "M3Tokenizer", dependencies: ["CSentencePiece"]),
        .target(name: "M3Model", dependencies: ["M3Tokenizer", "COpenBLAS", "CM3Kernels"]),
        .target(name: "M3Index", dependencies: ["CM3Kernels"]),
        .target(name: "M3Store", dependencies: ["CSQLite"]),
        .target(name: "M3Search", dependencies: ["M3Model", "M3Tokenizer", "M3Index", "M3Store"]),
        .executableTarget(
            name: "m3search",
            dependencies: ["M3Search", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Benchmark programs (Benchmarks/, BENCHMARKS.md); built, never run, in CI.
        .executableTarget(
            name: "m3bench",
            dependencies: ["M3Search", "M3Model", "M3Index", "M3Store", "CM3Kernels", "COpenBLAS",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/Sources/m3bench"),

        .testTarget(name: "M3TokenizerTests", dependencies: ["M3Tokenizer"]),
        .testTarget(name: "M3ModelTests", dependencies: ["M3Model", "M3Tokenizer", "CM3Kernels"]),
        .testTarget(name: "M3IndexTests", dependencies: ["M3Index"]),
        .testTarget(name: "M3StoreTests", dependencies: ["M3Store"]),
        .testTarget(name: "M3SearchTests", dependencies: ["M3Search", "m3search"]),
    ],
    cxxLanguageStandard: .cxx17
)
