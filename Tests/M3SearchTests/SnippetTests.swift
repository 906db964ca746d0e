import M3Index
@testable import M3Search
import XCTest

/// The snippet's scalar path (ASCII and plain Latin / punctuation text) against the Character
/// path it stands in for.
final class SnippetTests: XCTestCase {
    /// Random texts (words of mixed case, controls, every kind of ASCII whitespace, CR LF, no-break
    /// spaces, curly quotes, dashes, accented letters; leading and trailing runs; long and short)
    /// and terms: the same window, bit for bit. Texts with scalars the path does not take (İ, a
    /// combining accent, a line separator, an emoji) must fall back.
    func testPlainWindowEqualsCharacterWindow() {
        var rng = SplitMix64(seed: 13)
        let plain = ["the", "Python", "generators", "Exception", "HANDLING", "with", "try", "finally", "x=1;",
                     "(foo)", "A", "\u{01}", "\u{7F}", "\u{1F}", "yield", "Return", "café", "CAFÉ", "naïve", "’s",
                     "“quoted”", "—", "…", "Œuvre", "straße", "\u{A0}", "a\u{A0}b", "•", "‰", "ÿ", "Ÿ",
                     "“Python”", "Python’s", "naïve—the", "«yield»", "Straße", "the…"]
        // ASCII terms, some found right beside a non-ASCII scalar ("caf" in "café", "quoted" in "“quoted”").
        let asciiTerms = ["python", "the", "quoted", "stra", "uvre", "caf", "na", "ve", "yield", "generators", "zz"]
        let other = ["İstanbul", "cafe\u{301}", "\u{2028}", "😀", "\u{200D}", "Σ"]
        let spaces = [" ", "  ", "\n", "\r\n", "\t", "\u{0B}", "\u{0C}", "\r", " \n ", "\n\r", "\u{A0}"]
        var checked = 0
        for trial in 0..<3000 {
            let words = trial % 4 == 3 ? plain + other : plain
            var text = Bool.random(using: &rng) ? spaces.randomElement(using: &rng)! : ""
            for _ in 0..<Int.random(in: 0..<200, using: &rng) {
                text += words.randomElement(using: &rng)! + spaces.randomElement(using: &rng)!
            }
            let terms = (0..<Int.random(in: 0..<5, using: &rng)).map { _ in
                (trial % 2 == 0 ? asciiTerms : words).randomElement(using: &rng)!.lowercased()
            }.filter { $0.count >= 2 }
            let reference = snippetWindow(text, terms: terms)
            if let fast = asciiSnippetWindow(text, terms: terms) {
                XCTAssertEqual(fast, reference, "text \(text.debugDescription), terms \(terms)")
                checked += 1
            } else {
                XCTAssertTrue(other.contains { text.contains($0) } || terms.contains { $0.utf8.contains { $0 >= 0x80 } },
                              "fell back on \(text.debugDescription)")
            }
        }
        XCTAssertGreaterThan(checked, 1000)
        XCTAssertNil(asciiSnippetWindow("plain text", terms: ["café"]))
        XCTAssertNil(asciiSnippetWindow("İstanbul", terms: ["stanbul"]))
        XCTAssertEqual(snippet("plain   text\r\nhere", terms: ["text"], highlight: false), "plain text here")
    }

    /// What the scalar path assumes of the scalars it takes, for every one of them: it is one
    /// Character beside any of them or any ASCII scalar, and its lower case is one scalar of
    /// the same kind.
    func testPlainScalarsAreSingleCharacters() {
        let taken = (0x80 as UInt32 ..< 0x2100).filter(snippetPlainScalar).compactMap(Unicode.Scalar.init)
        let ascii = (0x20 as UInt32 ..< 0x7F).compactMap(Unicode.Scalar.init)
        XCTAssertGreaterThan(taken.count, 250)
        for s in taken {
            var view = String.UnicodeScalarView()
            for other in taken + ascii { view.append(s); view.append(other) }
            view.append(s)
            XCTAssertEqual(String(view).count, view.count, "U+\(String(s.value, radix: 16)) joins a neighbour")
            let lower = String(Character(s)).lowercased().unicodeScalars
            XCTAssertEqual(lower.count, 1, "U+\(String(s.value, radix: 16))")
            if let l = lower.first { XCTAssertTrue(l.value < 0x80 || snippetPlainScalar(l.value)) }
        }
    }
}
