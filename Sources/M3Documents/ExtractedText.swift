import Foundation

/// The text of a PDF, DOCX, ODT or EPUB file in reading order, split where the format has
/// structure: one segment per PDF page, per DOCX/ODT heading, per EPUB spine item.
///
/// ```swift
/// let text = try DocumentText.extract(bytes, format: .pdf, limits: .init(maxTextBytes: 64 << 20))
/// for s in text.segments { print(s.metadata["page"] ?? "", s.text.prefix(40)) }
/// ```
public struct ExtractedText: Sendable, Equatable {
    public struct Segment: Sendable, Equatable {
        public var text: String
        /// What locates the segment: `["page": "3"]` (PDF, 1-based) or `["section": "Introduction"]`.
        public var metadata: [String: String]

        public init(text: String, metadata: [String: String]) {
            self.text = text
            self.metadata = metadata
        }
    }

    public var segments: [Segment]

    /// The segments joined by blank lines, and where each begins in that text, in Unicode
    /// scalars (the unit of chunk character ranges).
    public func joined() -> (text: String, starts: [Int]) {
        var text = "", starts: [Int] = [], offset = 0
        for (i, s) in segments.enumerated() {
            if i > 0 { text += "\n\n"; offset += 2 }
            starts.append(offset)
            text += s.text
            offset += s.text.unicodeScalars.count
        }
        return (text, starts)
    }
}

/// The formats M3Documents reads.
public enum DocumentFormat: String, Sendable, CaseIterable {
    case pdf, docx, odt, epub
}

/// Bounds on what one file may cost to read. Documents are untrusted: a zip entry or a
/// PDF stream can claim or expand to far more than its file size.
public struct ExtractionLimits: Sendable {
    /// Inflated zip entries read, and text produced, in total.
    public var maxTextBytes: Int
    /// Zip entries an archive may list.
    public var maxEntries: Int

    public init(maxTextBytes: Int = 64 << 20, maxEntries: Int = 10_000) {
        self.maxTextBytes = maxTextBytes
        self.maxEntries = maxEntries
    }
}

/// Why a document's text could not be read. Each case's description is the skip message.
public enum DocumentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not a well-formed file of the format (truncated, corrupt, wrong type).
    case malformed(String)
    /// Reading it would cost more than the limits allow (zip bomb, huge XML).
    case tooLarge(String)
    /// Password-protected.
    case encrypted
    /// Well-formed, but holds no text (a scanned PDF without OCR).
    case noText
    /// libpoppler-cpp, loaded at the first PDF, cannot be (missing or incompatible); why.
    /// Only PDF files fail with it: other formats are read without it.
    case pdfUnavailable(String)

    public var description: String {
        switch self {
        case .malformed(let why): return "not a readable file of its type: \(why)"
        case .tooLarge(let why): return "too large to read: \(why)"
        case .encrypted: return "encrypted (password-protected); decrypt it to index it"
        case .noText: return "holds no text (a scanned document needs OCR first)"
        case .pdfUnavailable(let why): return "PDF support unavailable: \(why)"
        }
    }
}

public enum DocumentText {
    /// The format for a file name's extension, or nil.
    public static func format(path: String) -> DocumentFormat? {
        DocumentFormat(rawValue: (path as NSString).pathExtension.lowercased())
    }

    /// Extracts the text of a file's bytes. Throws `DocumentError`.
    public static func extract(_ bytes: [UInt8], format: DocumentFormat, limits: ExtractionLimits = .init()) throws -> ExtractedText {
        let segments: [ExtractedText.Segment]
        switch format {
        case .pdf: segments = try PDFText.extract(bytes, limits: limits)
        case .docx: segments = try OfficeText.docx(ZipReader(bytes, limits: limits))
        case .odt: segments = try OfficeText.odt(ZipReader(bytes, limits: limits))
        case .epub: segments = try EPUBText.extract(ZipReader(bytes, limits: limits))
        }
        let kept = segments.compactMap { s -> ExtractedText.Segment? in
            let text = s.text.trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : .init(text: text, metadata: s.metadata)
        }
        guard !kept.isEmpty else { throw DocumentError.noText }
        return ExtractedText(segments: kept)
    }
}
