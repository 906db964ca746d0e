import Foundation

/// Which documents a search may return. Every condition given must hold: the path matches
/// one of `paths` (when any are given), every `metadata` pair is in the document's metadata,
/// and its modification time lies in [`modifiedAfter`, `modifiedBefore`).
///
/// ```swift
/// var options = SearchOptions(k: 5)
/// options.filter = SearchFilter(paths: ["*.md", "/home/me/notes/**"], metadata: ["lang": "en"],
///                               modifiedAfter: SearchFilter.date("2024-01-01"))
/// let report = try index.search("context managers", options: options)
/// ```
///
/// The filter is resolved to the matching chunks first, and those are the only ones the
/// candidate generators (HNSW traversal, sparse postings) consider and the only ones scored:
/// a filtered search returns what an unfiltered search of an index holding only the
/// matching documents would return, however few documents match (none: no results).
public struct SearchFilter: Sendable, Equatable {
    /// Gitignore-style globs over the document id, any of which may match (empty: any path).
    /// A pattern without `/` matches the file name at any depth (`*.md`, `README*`); one with
    /// `/` matches the whole id (`/home/me/notes/**/*.md`; ids of indexed files are absolute
    /// canonical paths); a trailing `/` matches everything under that folder (`build/`).
    /// `*` and `?` never match `/`, `**` as a whole component matches any number of
    /// folders, `[abc]` a character class.
    public var paths: [String]
    /// Keys and values that must all be in the document's metadata (values compared as text).
    public var metadata: [String: String]
    /// Only documents modified at or after this instant (files: their mtime when indexed;
    /// documents added through the API: when they were added).
    public var modifiedAfter: Date?
    /// Only documents modified before this instant.
    public var modifiedBefore: Date?

    public init(paths: [String] = [], metadata: [String: String] = [:], modifiedAfter: Date? = nil, modifiedBefore: Date? = nil) {
        self.paths = paths
        self.metadata = metadata
        self.modifiedAfter = modifiedAfter
        self.modifiedBefore = modifiedBefore
    }

    /// True when the filter has no condition (it allows every document).
    public var isEmpty: Bool { paths.isEmpty && metadata.isEmpty && modifiedAfter == nil && modifiedBefore == nil }

    /// Parses an ISO 8601 date (`2024-05-01`, midnight UTC) or date-time (`2024-05-01T12:30`,
    /// `2024-05-01T12:30:00Z`, `2024-05-01T12:30:00.5+02:00`; UTC when no offset is given).
    /// nil when `text` is neither.
    public static func date(_ text: String) -> Date? {
        let s = text.trimmingCharacters(in: .whitespaces)
        let dateOnly = ISO8601DateFormatter()
        dateOnly.formatOptions = [.withFullDate]
        dateOnly.timeZone = TimeZone(identifier: "UTC")
        if s.count == 10, let d = dateOnly.date(from: s) { return d }
        guard s.count >= 16, s.count <= 40 else { return nil }
        let halves = s.split(separator: "T", maxSplits: 1, omittingEmptySubsequences: false)
        guard halves.count == 2 else { return nil }
        // The time, then its offset (none: UTC); seconds are optional.
        let time = halves[1]
        let zoneStart = time.firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) ?? time.endIndex
        var clock = String(time[..<zoneStart])
        if clock.filter({ $0 == ":" }).count == 1 { clock += ":00" }
        let zone = zoneStart == time.endIndex ? "Z" : String(time[zoneStart...])
        let t = halves[0] + "T" + clock + zone
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds]] {
            let f = ISO8601DateFormatter()
            f.formatOptions = options
            if let d = f.date(from: t) { return d }
        }
        return nil
    }

    /// Whether a document with this id, metadata and modification time passes the filter.
    /// The reference definition: the index resolves the mtime and metadata conditions in SQL
    /// and the paths with `PathPattern`, which must agree with it.
    func allows(path: String, metadata docMetadata: [String: String]?, mtime: Double) -> Bool {
        if !paths.isEmpty && !paths.contains(where: { PathPattern($0).matches(path) }) { return false }
        for (k, v) in metadata where docMetadata?[k] != v { return false }
        if let after = modifiedAfter, !(mtime >= after.timeIntervalSince1970) { return false }
        if let before = modifiedBefore, !(mtime < before.timeIntervalSince1970) { return false }
        return true
    }
}

/// One gitignore-style glob over a document id (see `SearchFilter.paths`).
///
///     PathPattern("*.md").matches("/a/b/notes.md")            // true: no "/", the name at any depth
///     PathPattern("/a/**/*.md").matches("/a/b/c/notes.md")    // true
///     PathPattern("/a/*.md").matches("/a/b/notes.md")         // false: "*" stops at "/"
///     PathPattern("b/").matches("/a/b/c/notes.md")            // true: everything under a folder b
public struct PathPattern: Sendable, Equatable {
    /// The pattern's components; "**" matches any number of path components.
    let components: [String]
    /// A pattern without "/" (but a trailing one) floats: it may start at any component.
    let floating: Bool
    /// A trailing "/": the pattern names a folder, and matches everything under it.
    let folder: Bool

    public init(_ pattern: String) {
        var p = pattern
        folder = p.hasSuffix("/") && p.count > 1
        if folder { p.removeLast() }
        floating = !p.contains("/")
        let parts = p.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        components = parts
    }

    /// Whether `path` (an id; "/"-separated) matches.
    public func matches(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var pattern = components
        if floating { pattern.insert("**", at: 0) }
        if folder { pattern.append("**") }
        // A folder pattern needs at least one component below the folder.
        if folder { pattern[pattern.count - 1] = "**+" }
        return Self.match(pattern[...], parts[...])
    }

    /// Component-wise matching: "**" takes zero or more components ("**+" one or more),
    /// any other component is an fnmatch(3) pattern over one component.
    private static func match(_ p: ArraySlice<String>, _ s: ArraySlice<String>) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        let rest = p.dropFirst()
        if first == "**" || first == "**+" {
            var tail = s
            if first == "**+" {
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
            while true {
                if match(rest, tail) { return true }
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
        }
        guard let name = s.first, fnmatch(first, name, 0) == 0 else { return false }
        return match(rest, s.dropFirst())
    }
}
