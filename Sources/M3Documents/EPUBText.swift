import Foundation

/// EPUB: META-INF/container.xml names the package document (OPF); its spine lists the
/// XHTML chapters in reading order. One segment per chapter, named by its first heading
/// (or its <title>, or its file name).
enum EPUBText {
    typealias Segment = ExtractedText.Segment

    static func extract(_ zip: ZipReader) throws -> [Segment] {
        var opfPath: String?
        try XMLScanner.scan(try zip.read("META-INF/container.xml")) { event in
            if case .start(let name, let attributes) = event, localName(name) == "rootfile", opfPath == nil {
                opfPath = attributes["full-path"]
            }
        }
        guard let opfPath, !opfPath.isEmpty else { throw DocumentError.malformed("META-INF/container.xml names no package document") }

        var manifest: [String: String] = [:], spine: [String] = []
        try XMLScanner.scan(try zip.read(opfPath)) { event in
            guard case .start(let name, let attributes) = event else { return }
            switch localName(name) {
            case "item": if let id = attributes["id"], let href = attributes["href"] { manifest[id] = href }
            case "itemref": if let idref = attributes["idref"] { spine.append(idref) }
            default: break
            }
        }
        let base = (opfPath as NSString).deletingLastPathComponent
        var segments: [Segment] = []
        var seen = Set<String>()
        for (number, id) in spine.enumerated() {
            guard let href = manifest[id], let path = resolve(href, against: base), seen.insert(path).inserted else { continue }
            let (text, title) = try chapter(try zip.read(path))
            let section = title ?? (path as NSString).lastPathComponent
            segments.append(Segment(text: text, metadata: ["section": section, "chapter": String(number + 1)]))
        }
        return segments
    }

    /// An href relative to the OPF's folder, percent-decoded, without fragment, and with
    /// "." and ".." resolved; nil when it leaves the archive.
    static func resolve(_ href: String, against base: String) -> String? {
        let raw = href.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? href
        let decoded = raw.removingPercentEncoding ?? raw
        var parts: [Substring] = base.isEmpty ? [] : base.split(separator: "/")
        for part in decoded.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { guard !parts.isEmpty else { return nil }; parts.removeLast(); continue }
            parts.append(part)
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    static let blockElements: Set<String> = ["p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section",
                                             "blockquote", "pre", "dt", "dd", "hr", "td", "th"]

    /// An XHTML chapter's visible text and its title (first h1–h3, else <title>).
    static func chapter(_ xml: [UInt8]) throws -> (String, String?) {
        var text = "", skip = 0, inBody = false
        var heading: String?, headingText = "", inHeading = 0
        var title: String?, titleText = "", inTitle = false
        try XMLScanner.scan(xml) { event in
            switch event {
            case .start(let name, _):
                let tag = localName(name)
                if tag == "body" { inBody = true }
                if tag == "script" || tag == "style" { skip += 1 }
                if tag == "title" { inTitle = true }
                if heading == nil, tag == "h1" || tag == "h2" || tag == "h3" { inHeading += 1 }
                if blockElements.contains(tag) && !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
            case .end(let name):
                let tag = localName(name)
                if tag == "script" || tag == "style" { skip -= 1 }
                if tag == "title" { inTitle = false; title = titleText.trimmingCharacters(in: .whitespacesAndNewlines) }
                if inHeading > 0, tag == "h1" || tag == "h2" || tag == "h3" {
                    inHeading -= 1
                    if inHeading == 0 { heading = headingText.trimmingCharacters(in: .whitespacesAndNewlines) }
                }
                if blockElements.contains(tag) && !text.hasSuffix("\n") { text += "\n" }
            case .text(let t):
                if inTitle { titleText += t }
                guard inBody, skip == 0 else { return }
                text += t
                if inHeading > 0 { headingText += t }
            }
        }
        let name = [heading, title].compactMap { $0 }.first { !$0.isEmpty }
        return (text, name.map { String($0.prefix(200)) })
    }

    static func localName(_ name: String) -> String {
        (name.split(separator: ":").last.map(String.init) ?? name).lowercased()
    }
}
