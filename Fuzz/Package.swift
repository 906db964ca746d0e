// swift-tools-version:6.0
// libFuzzer targets for m3search's parsers of untrusted bytes (see README.md here and
// RELIABILITY.md). A separate package so that `swift test` at the root never builds them.
// Build: swift build -c release --sanitize=fuzzer -Xswiftc -enable-testing   (see run.sh)
import PackageDescription

let package = Package(
    name: "m3search-fuzz",
    dependencies: [.package(name: "m3search", path: "..")],
    targets: [
        // The model's weight files: format sniffing, safetensors header, torch zip archive.
        .executableTarget(name: "FuzzSafeTensors", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // The restricted unpickler on its own (data.pkl of a torch checkpoint).
        .executableTarget(name: "FuzzPickle", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // HTML to visible text.
        .executableTarget(name: "FuzzHTML", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // config.json: strict JSON, every size bounded.
        .executableTarget(name: "FuzzConfig", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // sentencepiece.bpe.model bytes or a cached tokenizer image, then tokenizing.
        .executableTarget(name: "FuzzTokenizer", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // DOCX, ODT, EPUB: zip (M3Model's ZipArchive + zlib) and XML (M3Documents).
        .executableTarget(name: "FuzzZip", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // The bounded XML scanner on its own.
        .executableTarget(name: "FuzzXML", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // PDF text through poppler (libpoppler-cpp).
        .executableTarget(name: "FuzzPDF", dependencies: [.product(name: "M3Search", package: "m3search")]),
        // Arbitrary bytes opened as an index, checked and searched.
        .executableTarget(name: "FuzzIndex", dependencies: [.product(name: "M3Search", package: "m3search")]),
    ]
)
