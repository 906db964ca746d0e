import ArgumentParser
import Foundation
import M3Search

/// `--path`, `--meta`, `--modified-after`, `--modified-before`: which documents a query
/// may return (`SearchFilter`).
struct FilterOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Only documents whose path matches this gitignore-style glob (repeatable: any may match).",
        discussion: "A pattern without / matches the file name at any depth (*.md); one with / is a path from the current folder (docs/**/*.md) or an absolute one; a trailing / takes everything under a folder.",
        valueName: "glob"))
    var path: [String] = []

    @Option(name: .customLong("meta"), help: ArgumentHelp(
        "Only documents whose metadata has KEY with VALUE (repeatable: all must match).", valueName: "key=value"))
    var meta: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Only documents modified at or after this ISO 8601 date or date-time (UTC unless an offset is given).",
        valueName: "date"))
    var modifiedAfter: String?

    @Option(name: .long, help: ArgumentHelp("Only documents modified before this date or date-time.", valueName: "date"))
    var modifiedBefore: String?

    func validate() throws { _ = try filter() }

    /// The filter the options describe; nil when none is given.
    func filter(currentFolder: String = FileManager.default.currentDirectoryPath) throws -> SearchFilter? {
        var filter = SearchFilter()
        for p in path {
            guard !p.isEmpty else { throw ValidationError("--path: the pattern is empty") }
            filter.paths += Self.patterns(p, currentFolder: currentFolder)
        }
        for pair in meta {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw ValidationError("--meta expects KEY=VALUE (got \"\(pair)\")")
            }
            filter.metadata[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        func date(_ text: String?, _ flag: String) throws -> Date? {
            guard let text else { return nil }
            guard let d = SearchFilter.date(text) else {
                throw ValidationError("\(flag): \"\(text)\" is not an ISO 8601 date (2024-05-01) or date-time (2024-05-01T12:30[:00][Z|+02:00])")
            }
            return d
        }
        filter.modifiedAfter = try date(modifiedAfter, "--modified-after")
        filter.modifiedBefore = try date(modifiedBefore, "--modified-before")
        return filter.isEmpty ? nil : filter
    }

    /// What one `--path` stands for. Ids of indexed files are canonical absolute paths, so a
    /// relative pattern with a `/` (`docs/*.md`, `./docs/`) also matches from the current
    /// folder (canonical too); the pattern as given still matches ids added as relative
    /// strings through the library or the server.
    static func patterns(_ pattern: String, currentFolder: String) -> [String] {
        let inner = pattern.hasSuffix("/") ? String(pattern.dropLast()) : pattern
        guard inner.contains("/"), !pattern.hasPrefix("/"), !pattern.hasPrefix("**") else { return [pattern] }
        var base = currentFolder
        if let resolved = realpath(currentFolder, nil) {
            base = String(cString: resolved)
            free(resolved)
        }
        var parts = base.split(separator: "/").map(String.init)
        for c in inner.split(separator: "/").map(String.init) {
            switch c {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(c)
            }
        }
        let absolute = "/" + parts.joined(separator: "/") + (pattern.hasSuffix("/") ? "/" : "")
        let given = pattern.hasPrefix("./") ? String(pattern.dropFirst(2)) : pattern
        return given.hasPrefix("../") ? [absolute] : [absolute, given]
    }
}
