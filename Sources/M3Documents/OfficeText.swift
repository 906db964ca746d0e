import Foundation
/// DOCX (Office Open XML) and ODT (OpenDocument) text: paragraphs in order, a new segment
/// at each heading, named by the heading's text.
enum OfficeText {
    typealias Segment = ExtractedText.Segment

    /// Collects paragraphs into segments, starting a new one at each heading.
    private struct Sections {
        var segments: [Segment] = []
        var current = ""
        var section: String?

        mutating func paragraph(_ text: String, heading: Bool) {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if heading && !trimmed.isEmpty {
                finish()
                section = String(trimmed.prefix(200))
            }
            if !text.isEmpty { current += current.isEmpty ? text : "\n" + text }
        }

        mutating func finish() {
            if !current.isEmpty { segments.append(Segment(text: current, metadata: section.map { ["section": $0] } ?? [:])) }
            current = ""
        }
    }

    /// word/document.xml: text in `w:t`, paragraphs `w:p`, headings by paragraph style
    /// ("Heading1"…, "Title") or an outline level.
    static func docx(_ zip: ZipReader) throws -> [Segment] {
        let xml = try zip.read("word/document.xml")
        var sections = Sections()
        var paragraph = "", inText = 0, heading = false, depth = 0
        try XMLScanner.scan(xml) { event in
            switch event {
            case .start(let name, let attributes):
                switch name {
                case "w:p": if depth == 0 { paragraph = ""; heading = false }; depth += 1
                case "w:t": inText += 1
                case "w:tab": paragraph += "\t"
                case "w:br", "w:cr": paragraph += "\n"
                case "w:pStyle":
                    let style = (attributes["w:val"] ?? "").lowercased()
                    if style.hasPrefix("heading") || style == "title" { heading = true }
                case "w:outlineLvl": heading = true
                default: break
                }
            case .end(let name):
                switch name {
                case "w:t": inText -= 1
                case "w:p":
                    depth -= 1
                    if depth == 0 { sections.paragraph(paragraph, heading: heading) }
                default: break
                }
            case .text(let text):
                if inText > 0 { paragraph += text }
            }
        }
        sections.finish()
        return sections.segments
    }

    /// content.xml: paragraphs `text:p`, headings `text:h`, with `text:s` (spaces),
    /// `text:tab` and `text:line-break` inside.
    static func odt(_ zip: ZipReader) throws -> [Segment] {
        let xml = try zip.read("content.xml")
        var sections = Sections()
        var paragraph = "", depth = 0, heading = false
        try XMLScanner.scan(xml) { event in
            switch event {
            case .start(let name, let attributes):
                switch name {
                case "text:p", "text:h":
                    if depth == 0 { paragraph = ""; heading = name == "text:h" }
                    depth += 1
                case "text:s" where depth > 0:
                    let count = Int(attributes["text:c"] ?? "1") ?? 1
                    paragraph += String(repeating: " ", count: max(1, min(count, 100)))
                case "text:tab" where depth > 0: paragraph += "\t"
                case "text:line-break" where depth > 0: paragraph += "\n"
                default: break
                }
            case .end(let name):
                if name == "text:p" || name == "text:h" {
                    depth -= 1
                    if depth == 0 { sections.paragraph(paragraph, heading: heading) }
                }
            case .text(let text):
                if depth > 0 { paragraph += text }
            }
        }
        sections.finish()
        return sections.segments
    }
}
