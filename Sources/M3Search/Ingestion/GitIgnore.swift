import Foundation

/// One line of a .gitignore, .ignore or .git/info/exclude file, or one `--include` /
/// `--exclude` glob, with git's semantics (gitignore(5)):
/// - a pattern without a `/` (other than a trailing one) matches a name at any depth below
///   its file's folder; with one, it is anchored there (a leading `/` only anchors);
/// - `*` and `?` stop at `/`, `**` matches any number of folders (`a/**` everything inside a),
///   `[…]` classes and `\` escapes as fnmatch(3);
/// - a trailing `/` matches folders only; a leading `!` re-includes what an earlier
///   pattern excluded (not inside an excluded folder: that is never entered).
struct IgnorePattern: Equatable {
    var segments: [String]
    var negated: Bool
    var directoryOnly: Bool

    /// Parses one line; nil for blank lines, comments and lines with nothing left.
    init?(line raw: Substring) {
        var line = String(raw)
        if line.hasSuffix("\r") { line.removeLast() }
        // Trailing spaces are dropped unless escaped with a backslash.
        while line.hasSuffix(" ") && !line.hasSuffix("\\ ") { line.removeLast() }
        guard !line.isEmpty, !line.hasPrefix("#") else { return nil }
        negated = line.hasPrefix("!")
        if negated { line.removeFirst() }
        if line.hasPrefix("\\!") || line.hasPrefix("\\#") { line.removeFirst() }
        directoryOnly = line.hasSuffix("/")
        while line.hasSuffix("/") { line.removeLast() }
        guard !line.isEmpty else { return nil }
        let anchored = line.contains("/")
        if line.hasPrefix("/") { line.removeFirst() }
        var parts = line.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if !anchored { parts.insert("**", at: 0) }
        guard !parts.isEmpty else { return nil }
        segments = parts
    }

    /// Whether the pattern matches `path` (relative to the pattern's folder, "/"-separated).
    func matches(_ path: [Substring], isDirectory: Bool) -> Bool {
        if directoryOnly && !isDirectory { return false }
        return Self.match(segments[...], path[...])
    }

    private static func match(_ pattern: ArraySlice<String>, _ path: ArraySlice<Substring>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            // A trailing "**" matches one or more names ("a/**" is what is inside a, not a).
            if rest.isEmpty { return !path.isEmpty }
            var tail = path
            while true {
                if match(rest, tail) { return true }
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
        }
        guard let name = path.first, fnmatch(first, String(name), 0) == 0 else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }

    /// The patterns of an ignore file's text.
    static func parse(_ text: String) -> [IgnorePattern] {
        text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { IgnorePattern(line: $0) }
    }
}

/// The patterns of one folder's ignore files, applied to paths below that folder.
struct IgnoreRules {
    /// The folder the patterns are relative to, as path components from the walk's root.
    var base: [Substring]
    var patterns: [IgnorePattern]
    /// For the ignore files of folders above the root: the names from that folder down to
    /// the root, put before each path so the patterns see it from their own folder.
    var prefix: [Substring] = []

    /// true: ignored, false: re-included, nil: no pattern speaks of the path.
    func decision(_ path: [Substring], isDirectory: Bool) -> Bool? {
        guard path.count > base.count, path.starts(with: base) else { return nil }
        let relative = prefix + Array(path[base.count...])
        for p in patterns.reversed() where p.matches(relative, isDirectory: isDirectory) { return !p.negated }
        return nil
    }
}
