import Foundation

/// The files of a folder that `m3search index` considers, as ripgrep chooses them:
/// hidden entries skipped; `.ignore` files respected everywhere and `.gitignore` files (and
/// `.git/info/exclude`) inside a git work tree, including those of the folders above the
/// root up to the repository's top; nested files override their parents and `.ignore`
/// overrides `.gitignore`; an ignored folder is not entered. `--exclude` globs prune the
/// same way; `--include` globs keep only files they (or a folder above them) match.
///
/// readdir/lstat: symlinks are not followed (no loops), FIFOs and devices never opened.
/// Names that are not UTF-8 come back in `undecodable`, never silently dropped.
struct FileWalker {
    var respectIgnoreFiles = true
    var include: [IgnorePattern] = []
    var exclude: [IgnorePattern] = []

    init(respectIgnoreFiles: Bool = true, include: [String] = [], exclude: [String] = []) {
        self.respectIgnoreFiles = respectIgnoreFiles
        self.include = include.compactMap { IgnorePattern(line: Substring($0)) }
        self.exclude = exclude.compactMap { IgnorePattern(line: Substring($0)) }
    }

    func walk(_ root: String) -> (files: [String], undecodable: [String]) {
        var files: [String] = [], undecodable: [String] = []
        var stack = respectIgnoreFiles ? inheritedRules(root) : []
        let inRepository = respectIgnoreFiles && Self.repositoryTop(of: root) != nil

        func ignored(_ path: [Substring], isDirectory: Bool) -> Bool {
            // Deepest rules first: the nearest ignore file decides.
            for rules in stack.reversed() {
                if let d = rules.decision(path, isDirectory: isDirectory) { return d }
            }
            return false
        }
        func visit(_ relative: [Substring]) {
            let folder = relative.isEmpty ? root : root + "/" + relative.joined(separator: "/")
            let pushed = respectIgnoreFiles ? folderRules(folder, base: relative, gitignore: inRepository) : []
            stack.append(contentsOf: pushed)
            defer { stack.removeLast(pushed.count) }
            guard let dir = opendir(folder) else { return }
            defer { closedir(dir) }
            var entries: [(String, Bool)] = []
            while let entry = readdir(dir) {
                let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
                guard let first = bytes.first, first != UInt8(ascii: ".") else { continue }  // hidden, ".", ".."
                guard let name = String(validating: bytes, as: UTF8.self) else {
                    undecodable.append((relative.map(String.init) + [String(decoding: bytes, as: UTF8.self)]).joined(separator: "/"))
                    continue
                }
                var info = stat()
                guard lstat(folder + "/" + name, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: entries.append((name, true))
                case S_IFREG: entries.append((name, false))
                default: continue
                }
            }
            for (name, isDirectory) in entries {
                let path = relative + [Substring(name)]
                if ignored(path, isDirectory: isDirectory) { continue }
                if exclude.contains(where: { $0.matches(path, isDirectory: isDirectory) }) { continue }
                if isDirectory {
                    visit(path)
                } else if include.isEmpty || (1 ... path.count).contains(where: { n in
                    include.contains { $0.matches(Array(path.prefix(n)), isDirectory: n < path.count) }
                }) {
                    files.append(path.joined(separator: "/"))
                }
            }
        }
        visit([])
        return (files.sorted(), undecodable.sorted())
    }

    /// The rules of one folder's ignore files: .gitignore first, .ignore after (it wins).
    private func folderRules(_ folder: String, base: [Substring], gitignore: Bool) -> [IgnoreRules] {
        var out: [IgnoreRules] = []
        for name in gitignore ? [".gitignore", ".ignore"] : [".ignore"] {
            if let text = Self.readSmall(folder + "/" + name) {
                out.append(IgnoreRules(base: base, patterns: IgnorePattern.parse(text)))
            }
        }
        return out
    }

    /// Rules from above the root: .git/info/exclude and the ignore files of the folders
    /// from the repository's top (or the file system's) down to the root's parent, each
    /// rebased onto the root so they apply to paths below it.
    private func inheritedRules(_ root: String) -> [IgnoreRules] {
        let absolute = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
        let top = Self.repositoryTop(of: root)
        var chain: [String] = []
        var folder = absolute
        while folder != "/" {
            let parent = (folder as NSString).deletingLastPathComponent
            if let top, folder == top { break }
            chain.append(parent)
            folder = parent
        }
        var out: [IgnoreRules] = []
        if let top, let text = Self.readSmall(top + "/.git/info/exclude") {
            out.append(contentsOf: Self.rebase(IgnorePattern.parse(text), from: top, to: absolute))
        }
        for parent in chain.reversed() {
            for name in top != nil ? [".gitignore", ".ignore"] : [".ignore"] {
                if let text = Self.readSmall(parent + "/" + name) {
                    out.append(contentsOf: Self.rebase(IgnorePattern.parse(text), from: parent, to: absolute))
                }
            }
        }
        return out
    }

    /// Patterns of `folder` applied below `root` (a folder inside it): each path is seen
    /// from `folder`, the names between the two put before it.
    private static func rebase(_ patterns: [IgnorePattern], from folder: String, to root: String) -> [IgnoreRules] {
        let between = root.dropFirst(folder == "/" ? 1 : folder.count + 1).split(separator: "/")
        return [IgnoreRules(base: [], patterns: patterns, prefix: Array(between))]
    }

    /// The top of the git work tree holding `path` (a folder with `.git`), or nil.
    static func repositoryTop(of path: String) -> String? {
        var folder = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        while true {
            if FileManager.default.fileExists(atPath: folder + "/.git") { return folder }
            if folder == "/" || folder.isEmpty { return nil }
            folder = (folder as NSString).deletingLastPathComponent
        }
    }

    /// A small text file's contents (ignore files over 1 MiB are not read), or nil.
    static func readSmall(_ path: String) -> String? {
        guard case .success(let data) = DocumentReader.readBounded(path: path, maxBytes: 1 << 20) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
