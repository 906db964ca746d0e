// swift-tools-version:6.1
// m3search: BGE-M3 hybrid retrieval (dense + sparse + ColBERT) in Swift.
// Data flows one way: text → M3Tokenizer → M3Model → indexes → M3Search → M3Server (HTTP) → m3search (CLI).
import PackageDescription

let package = Package(
    name: "m3search",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "M3Search", targets: ["M3Search"]),
        .library(name: "M3Server", targets: ["M3Server"]),
        .executable(name: "m3search", targets: ["m3search"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The HTTP service (M3Server). Hummingbird's swift-configuration support is not
        // used (flags and env vars are read by the CLI), so that trait stays off.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // System libraries from Debian (apt) found through pkg-config.
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        // XXH3 digests of model files (libxxhash) and zip CRC-32s (zlib).
        .systemLibrary(
            name: "CChecksums", pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev", "zlib1g-dev"]), .brew(["xxhash"])]),
        // libsentencepiece's C++ API behind a small C header.
        .target(
            name: "CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece")]),
        // libpoppler-cpp's PDF text behind a small C API. Not linked: the shim dlopens it at
        // the first PDF, so the ~30 libraries poppler pulls in cost nothing at every start
        // (its headers, from libpoppler-cpp-dev, are still needed to build).
        .target(name: "CPoppler"),
        // Hot loops BLAS does not cover (layer norm, GELU, softmax, conversions).
        .target(name: "CM3Kernels"),

        .target(name: "M3Tokenizer", dependencies: ["CSentencePiece"]),
        .target(name: "M3Model", dependencies: ["M3Tokenizer", "COpenBLAS", "CM3Kernels", "CChecksums"]),
        // In-memory indexes and the byte forms of vectors; the model's output types (MultiVector,
        // SparseVector) are what they store.
        .target(name: "M3Index", dependencies: ["M3Model", "CM3Kernels"]),
        .target(name: "M3Store", dependencies: ["CSQLite", "CChecksums"]),
        // Files to text with structure: PDF pages (poppler), DOCX/ODT headings, EPUB chapters
        // (zip through M3Model's ZipArchive + zlib, a bounded XML reader).
        .target(name: "M3Documents", dependencies: ["M3Model", "CChecksums", "CPoppler"]),
        .target(name: "M3Search", dependencies: ["M3Model", "M3Tokenizer", "M3Index", "M3Store", "M3Documents"]),
        // `m3search serve`: the JSON API over HTTP, Prometheus metrics, graceful shutdown.
        .target(
            name: "M3Server",
            dependencies: ["M3Search",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdCore", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOHTTPTypes", package: "swift-nio-extras")],
            exclude: ["openapi.json"]),
        .executableTarget(
            name: "m3search",
            dependencies: ["M3Search", "M3Server", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")]),
        // Benchmark programs (Benchmarks/, BENCHMARKS.md); built, never run, in CI.
        .executableTarget(
            name: "m3bench",
            dependencies: ["M3Search", "M3Model", "M3Index", "CM3Kernels", "COpenBLAS",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/Sources/m3bench"),

        // A test target per module: each module's fast paths against its references.
        // M3TestSupport: what several test targets share (a model cache outside ~/.cache, seeded data).
        .target(name: "M3TestSupport", path: "Tests/M3TestSupport"),
        .testTarget(name: "CM3KernelsTests", dependencies: ["CM3Kernels", "M3TestSupport"]),
        .testTarget(name: "M3TokenizerTests", dependencies: ["M3Tokenizer"]),
        .testTarget(name: "M3ModelTests", dependencies: ["M3Model", "M3Tokenizer", "CM3Kernels", "M3TestSupport"]),
        .testTarget(name: "M3IndexTests", dependencies: ["M3Index", "M3Model", "M3TestSupport"]),
        .testTarget(name: "M3StoreTests", dependencies: ["M3Store"]),
        .testTarget(name: "M3DocumentsTests", dependencies: ["M3Documents"]),
        .testTarget(name: "M3SearchTests", dependencies: ["M3Search", "m3search", "M3TestSupport"]),
        // An app's view: imports M3Search alone, so every public type it names must be re-exported.
        .testTarget(name: "M3SearchImportTests", dependencies: ["M3Search"]),
        .testTarget(name: "M3ServerTests", dependencies: ["M3Server", "M3Search", "m3search", "M3TestSupport"]),
    ],
    cxxLanguageStandard: .cxx17
)
