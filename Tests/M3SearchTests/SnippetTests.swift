import M3Index
@testable import M3Search
import XCTest

/// The snippet's byte path for ASCII text against the Character path it stands in for.
final class SnippetTests: XCTestCase {
    /// Random ASCII texts (words of mixed case, controls, every kind of ASCII whitespace, CR LF,
    /// leading and trailing runs, long and short) and terms: the same window, bit for bit.
    func testASCIIWindowEqualsCharacterWindow() {
        var rng = SplitMix64(seed: 13)
        let words = ["the", "Python", "generators", "Exception", "HANDLING", "with", "try", "finally", "x=1;",
                     "(foo)", "A", "\u{01}", "\u{7F}", "\u{1F}", "yield", "Return", "é"]
        let spaces = [" ", "  ", "\n", "\r\n", "\t", "\u{0B}", "\u{0C}", "\r", " \n ", "\n\r"]
        var checked = 0
        for _ in 0..<3000 {
            var text = Bool.random(using: &rng) ? spaces.randomElement(using: &rng)! : ""
            for _ in 0..<Int.random(in: 0..<200, using: &rng) {
                text += words.randomElement(using: &rng)! + spaces.randomElement(using: &rng)!
            }
            let terms = (0..<Int.random(in: 0..<5, using: &rng)).map { _ in words.randomElement(using: &rng)!.lowercased() }
                .filter { $0.count >= 2 }
            let reference = snippetWindow(text, terms: terms)
            if let fast = asciiSnippetWindow(text, terms: terms) {
                XCTAssertEqual(fast, reference, "text \(text.debugDescription), terms \(terms)")
                checked += 1
            } else {
                // Only non-ASCII text or terms leave the byte path.
                XCTAssertTrue(text.utf8.contains { $0 >= 0x80 } || terms.contains { $0.utf8.contains { $0 >= 0x80 } })
            }
        }
        XCTAssertGreaterThan(checked, 1000)
        XCTAssertNil(asciiSnippetWindow("plain text", terms: ["café"]))
        XCTAssertNil(asciiSnippetWindow("café au lait", terms: ["lait"]))
        XCTAssertEqual(snippet("plain   text\r\nhere", terms: ["text"], highlight: false), "plain text here")
    }
}
