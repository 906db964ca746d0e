import Foundation
@testable import M3Documents
import XCTest

/// The samples of Fixtures/documents (make_documents.py) against what they were built from
/// (expected.json) and, for PDF, against poppler-utils' pdftotext.
final class DocumentTextTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/documents")

    func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: Self.folder.appendingPathComponent(name))) }

    struct Section: Decodable { var section: String?; var paragraphs: [String] }
    struct Expected: Decodable { var docx: [Section]; var odt: [Section]; var epub: [Section]; var pdf_pages: [String] }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.folder.appendingPathComponent("expected.json")))
    }

    func check(_ format: DocumentFormat, _ file: String, _ sections: [Section], line: UInt = #line) throws {
        let text = try DocumentText.extract(bytes(file), format: format)
        XCTAssertEqual(text.segments.count, sections.count, line: line)
        for (segment, want) in zip(text.segments, sections) {
            XCTAssertEqual(segment.metadata["section"], want.section, line: line)
            let lines = segment.text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            XCTAssertEqual(lines, want.paragraphs, line: line)
        }
    }

    func testDOCXParagraphsAndHeadingSections() throws { try check(.docx, "sample.docx", try expected().docx) }
    func testODTParagraphsAndHeadingSections() throws { try check(.odt, "sample.odt", try expected().odt) }

    func testEPUBChaptersInSpineOrder() throws {
        try check(.epub, "sample.epub", try expected().epub)
        let text = try DocumentText.extract(bytes("sample.epub"), format: .epub)
        XCTAssertEqual(text.segments.map { $0.metadata["chapter"] }, ["1", "2"])
        XCTAssertFalse(text.segments.contains { $0.text.contains("color") }, "style text leaked")
    }

    /// Page texts equal what the generator wrote and what `pdftotext` extracts page by page.
    func testPDFPagesAgainstGeneratorAndPdftotext() throws {
        let text = try DocumentText.extract(bytes("sample.pdf"), format: .pdf)
        let pages = try expected().pdf_pages
        XCTAssertEqual(text.segments.map(\.text), pages)
        XCTAssertEqual(text.segments.map { $0.metadata["page"] }, pages.indices.map { String($0 + 1) })
        guard let pdftotext = ["/usr/bin/pdftotext", "/usr/local/bin/pdftotext"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("pdftotext (poppler-utils) is not installed")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: pdftotext)
        process.arguments = [Self.folder.appendingPathComponent("sample.pdf").path, "-"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let reference = output.split(separator: "\u{0C}").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        XCTAssertEqual(text.segments.map(\.text), reference)
    }

    /// The shim finds libpoppler-cpp at run time (dlopen, no link-time dependency): after a
    /// PDF is read through it, the library is mapped in this process (as the kernel lists it),
    /// the page texts equal the generator's, and the soname it loads passes the probe.
    func testPDFExtractionLoadsPopplerLazily() throws {
        let text = try DocumentText.extract(bytes("sample.pdf"), format: .pdf)
        XCTAssertEqual(text.segments.map(\.text), try expected().pdf_pages)
        XCTAssertNil(PDFText.unavailable)
        #if os(Linux)
        // Read to the end: /proc files report a size of 0.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps"))
        defer { try? handle.close() }
        let maps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        XCTAssertTrue(maps.contains("libswiftCore"), "unexpected /proc/self/maps: \(maps.prefix(300))")
        XCTAssertTrue(maps.contains("libpoppler-cpp"), "libpoppler-cpp is not mapped after a PDF was read")
        XCTAssertNil(PDFText.probe(library: "libpoppler-cpp.so.0"))
        #endif
    }

    /// A missing library, or one without poppler's functions, is refused with a reason
    /// instead of crashing; the error PDF files get then names it.
    func testMissingOrWrongPopplerIsRefusedWithAReason() throws {
        let missing = try XCTUnwrap(PDFText.probe(library: "libm3search-no-such-poppler.so.0"))
        XCTAssertTrue(missing.contains("libm3search-no-such-poppler.so.0"), missing)
        #if os(Linux)
        // zlib loads but has none of poppler's functions.
        let wrong = try XCTUnwrap(PDFText.probe(library: "libz.so.1"))
        XCTAssertTrue(wrong.contains("lacks"), wrong)
        #endif
        XCTAssertEqual(DocumentError.pdfUnavailable(missing).description, "PDF support unavailable: " + missing)
    }

    /// Every hostile sample fails with the DocumentError its damage calls for, quickly.
    func testHostileFilesFailWithClearErrors() throws {
        let cases: [(String, DocumentFormat, (DocumentError) -> Bool)] = [
            ("encrypted.pdf", .pdf, { $0 == .encrypted }),
            ("notext.pdf", .pdf, { $0 == .noText }),
            ("truncated.docx", .docx, { if case .malformed = $0 { return true }; return false }),
            ("bomb.docx", .docx, { if case .tooLarge = $0 { return true }; return false }),
            ("laughs.docx", .docx, { if case .malformed(let why) = $0 { return why.contains("DOCTYPE") }; return false }),
            ("deep.docx", .docx, { if case .malformed(let why) = $0 { return why.contains("deeper") }; return false }),
            ("malformed.odt", .odt, { if case .malformed = $0 { return true }; return false }),
            ("wrongext.epub", .epub, { if case .malformed(let why) = $0 { return why.contains("not a zip") }; return false }),
            ("sample.docx", .pdf, { if case .malformed = $0 { return true }; return false }),
            ("sample.pdf", .docx, { if case .malformed = $0 { return true }; return false }),
        ]
        for (file, format, matches) in cases {
            XCTAssertThrowsError(try DocumentText.extract(bytes(file), format: format), file) { error in
                guard let e = error as? DocumentError else { return XCTFail("\(file): \(error)") }
                XCTAssertTrue(matches(e), "\(file): \(e)")
                XCTAssertFalse(e.description.isEmpty)
            }
        }
    }

    /// A per-file budget smaller than an entry refuses it before inflating.
    func testBudgetBoundsInflatedBytes() throws {
        XCTAssertThrowsError(try DocumentText.extract(bytes("sample.docx"), format: .docx, limits: .init(maxTextBytes: 100))) {
            guard case .tooLarge = $0 as? DocumentError else { return XCTFail("\($0)") }
        }
    }

    /// Every prefix of each sample either extracts or throws DocumentError: never traps.
    func testEveryTruncationFailsCleanly() throws {
        for file in ["sample.docx", "sample.odt", "sample.epub", "sample.pdf"] {
            let whole = try bytes(file)
            let format = DocumentText.format(path: file)!
            for cut in stride(from: 0, to: whole.count, by: 7) {
                do { _ = try DocumentText.extract(Array(whole[0 ..< cut]), format: format) } catch is DocumentError {}
            }
        }
    }

    func testXMLReferencesAndStrictness() throws {
        var texts: [String] = []
        try XMLScanner.scan(Array("<a x='1 &amp; 2'>&lt;b&gt; &#x41;&#66; &nbsp;<![CDATA[<raw>]]></a>".utf8)) { event in
            if case .text(let t) = event { texts.append(t) }
            if case .start(_, let attributes) = event { XCTAssertEqual(attributes["x"], "1 & 2") }
        }
        XCTAssertEqual(texts.joined(), "<b> AB &nbsp;<raw>")
        for bad in ["<a><b></a></b>", "<a>", "<a x=1/>", "text<a/>", "<a></a>tail"] {
            XCTAssertThrowsError(try XMLScanner.scan(Array(bad.utf8)) { _ in }, bad)
        }
    }
}
