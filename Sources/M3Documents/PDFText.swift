import CPoppler
import Foundation

/// PDF text through poppler (libpoppler-cpp), one segment per page, in the reading order
/// `pdftotext` produces by default.
/// libpoppler-cpp is loaded at the first PDF, not at process start (see cpoppler.h).
enum PDFText {
    /// Nil when libpoppler-cpp is loaded (loading it now if need be), else why it cannot be.
    static var unavailable: String? { m3_pdf_unavailable().map { String(cString: $0) } }

    /// Nil when `library` (a file name or soname) loads and has every function the shim
    /// calls, else why not. Leaves the process's own choice alone.
    static func probe(library: String) -> String? {
        guard let why = m3_pdf_probe(library) else { return nil }
        defer { m3_pdf_free_text(why) }
        return String(cString: why)
    }

    static func extract(_ bytes: [UInt8], limits: ExtractionLimits) throws -> [ExtractedText.Segment] {
        guard bytes.count >= 5, bytes[0 ..< 5].elementsEqual(Array("%PDF-".utf8)) else {
            throw DocumentError.malformed("no %PDF- header")
        }
        if let why = unavailable { throw DocumentError.pdfUnavailable(why) }
        return try bytes.withUnsafeBufferPointer { buffer in
            var status: Int32 = 0
            let pdf = buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                m3_pdf_open($0, buffer.count, &status)
            }
            guard let pdf else {
                if status == Int32(M3_PDF_ENCRYPTED.rawValue) { throw DocumentError.encrypted }
                if status == Int32(M3_PDF_UNAVAILABLE.rawValue) { throw DocumentError.pdfUnavailable(unavailable ?? "libpoppler-cpp") }
                throw DocumentError.malformed("poppler cannot open it (damaged or truncated)")
            }
            defer { m3_pdf_close(pdf) }
            var segments: [ExtractedText.Segment] = []
            var total = 0
            for page in 0 ..< max(0, m3_pdf_page_count(pdf)) {
                var length = 0
                guard let text = m3_pdf_page_text(pdf, page, &length) else { continue }
                defer { m3_pdf_free_text(text) }
                total += length
                guard total <= limits.maxTextBytes else {
                    throw DocumentError.tooLarge("its text exceeds \(limits.maxTextBytes) bytes by page \(page + 1)")
                }
                let string = text.withMemoryRebound(to: UInt8.self, capacity: length) {
                    String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
                }
                // Form feeds end pages in poppler's output.
                segments.append(.init(text: string.replacingOccurrences(of: "\u{0C}", with: ""), metadata: ["page": String(page + 1)]))
            }
            return segments
        }
    }
}
