import Foundation
import M3Model
import M3Store

/// What `indexFiles` did.
public struct IndexSummary: Sendable, Equatable {
    public var indexed = 0          // new or changed files encoded
    public var unchanged = 0        // skipped: same size, mtime or content
    public var removed = 0          // gone from disk, removed from the index
    public var skipped = 0          // unsupported type, binary, empty, too large
    public var failed = 0           // unreadable
    public var chunks = 0           // chunks encoded
    public var tokens = 0           // tokens encoded
    public var warnings: [String] = []
    public var skippedByReason: [String: Int] = [:]
    public var seconds = 0.0
    /// The run stopped early because `shouldStop` said so; what it finished is committed.
    public var interrupted = false

    public init() {}
}

/// Progress of an indexing run, reported after each file.
public struct IndexProgress: Sendable {
    public var filesDone: Int
    public var filesTotal: Int
    public var chunks: Int
    public var tokens: Int
    public var elapsed: Double
}

/// Which files to index.
public struct FileSelection: Sendable {
    /// Globs with gitignore semantics, relative to each folder given (FileWalker): a glob
    /// without `/` matches a name at any depth, `dir/**` everything inside `dir`. Include:
    /// empty means everything m3search reads; exclude prunes folders it matches.
    public var include: [String] = []
    public var exclude: [String] = []
    /// Skip what `.gitignore` (in a git work tree), `.ignore` and `.git/info/exclude` list,
    /// as ripgrep does; false: `--no-ignore`.
    public var respectIgnoreFiles = true
    /// Files larger than this are skipped with a message.
    public var maxFileBytes: Int64 = 64 << 20
    /// Documents per transaction: a killed run keeps every finished batch.
    public var batchDocuments = 16

    public init(include: [String] = [], exclude: [String] = [], maxFileBytes: Int64 = 64 << 20, batchDocuments: Int = 16,
                respectIgnoreFiles: Bool = true) {
        self.respectIgnoreFiles = respectIgnoreFiles
        self.include = include
        self.exclude = exclude
        self.maxFileBytes = maxFileBytes
        self.batchDocuments = batchDocuments
    }
}

/// Turns texts and files into prepared documents, and hands them to the writer: walking
/// folders, reading files (DocumentReader), chunking (Chunker) and encoding. It changes
/// the index only through the writer's `add`, `remove` and `touch`.
///
/// Lock story: none of its own. Encoding runs outside every lock; `indexFiles` takes the
/// writer lock first, so the index cannot change underneath its comparison of the files
/// with the stored documents, and commits through the writer in batches.
struct Ingestion {
    let model: BGEM3
    let settings: IndexSettings
    let writer: IndexWriter

    /// Chunks and encodes one document's text.
    /// `locations`: where each part of a structured document (PDF page, DOCX section)
    /// begins in `text`, in Unicode scalars, ascending, with its metadata; each chunk gets
    /// the metadata of the part it starts in.
    func prepare(path: String, text: String, size: Int64, mtime: Double, contentHash: String, metadata: String?,
                 locations: [(start: Int, metadata: [String: String])] = []) throws -> PreparedDocument {
        // A model with fewer positions than the index's chunk length gets chunks it can take
        // whole (`SearchIndex.notes` says so), rather than chunks it would cut.
        let maxLength = min(settings.maxLength, model.config.maxSequenceLength)
        let overlap = min(settings.overlap, max(0, maxLength - 3))
        var chunks = Chunker.chunks(of: text, tokenizer: model.tokenizer, maxLength: maxLength, overlap: overlap,
                                    prefix: settings.passagePrefix)
        if let long = chunks.first(where: { $0.tokenIDs.count > maxLength }) {
            throw M3SearchError.invalidArgument("Invalid settings: the passage prefix \"\(settings.passagePrefix)\" takes "
                + "\(long.tokenIDs.count - 3) of the \(maxLength) tokens a chunk may have; use a shorter prefix or a longer chunk length")
        }
        if !locations.isEmpty {
            let encoded = try locations.map { String(decoding: try JSONEncoder.sorted.encode($0.metadata), as: UTF8.self) }
            for i in chunks.indices {
                // The last part starting at or before the chunk's first character.
                let part = (locations.lastIndex { $0.start <= chunks[i].charStart }) ?? 0
                chunks[i].metadata = encoded[part]
            }
        }
        let options = EncodeOptions(maxLength: maxLength, outputs: .all, pooling: settings.pooling, normalize: settings.normalize)
        let embeddings = try model.encode(tokenIDs: chunks.map(\.tokenIDs), options: options)
        return PreparedDocument(path: path, size: size, mtime: mtime, contentHash: contentHash, metadata: metadata,
                                chunks: chunks, embeddings: embeddings)
    }

    /// A document given through the library: its id, text and metadata, stamped now.
    func prepare(_ doc: DocumentInput) throws -> PreparedDocument {
        let data = Data(doc.text.utf8)
        let metadata = try doc.metadata.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        return try prepare(path: doc.id, text: doc.text, size: Int64(data.count), mtime: Date().timeIntervalSince1970,
                           contentHash: DocumentReader.contentHash(data), metadata: metadata)
    }

    /// A document of precomputed chunk embeddings (no model run). Each needs dense, sparse
    /// and ColBERT outputs of the index's dimension.
    func prepare(_ doc: SearchIndex.EncodedDocument) throws -> PreparedDocument {
        var chunks: [Chunk] = [], offset = 0
        for (ordinal, c) in doc.chunks.enumerated() {
            guard c.embedding.dense?.count == settings.dimension, c.embedding.sparse != nil,
                  c.embedding.colbert?.dimension == settings.dimension else {
                throw M3SearchError.invalidArgument("Invalid search options: chunk \(ordinal) of \(doc.id) lacks dense, sparse or \(settings.dimension)-d ColBERT vectors")
            }
            let range = c.charRange ?? offset ..< offset + c.text.unicodeScalars.count
            // Only the count of token ids is stored; the ids themselves are not needed.
            chunks.append(Chunk(ordinal: ordinal, tokenIDs: [Int32](repeating: 0, count: c.tokenCount),
                                charStart: range.lowerBound, charEnd: range.upperBound, text: c.text,
                                metadata: try c.metadata.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }))
            offset = range.upperBound
        }
        let text = Data(doc.chunks.map(\.text).joined().utf8)
        let metadata = try doc.metadata.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        return PreparedDocument(path: doc.id, size: doc.size ?? Int64(text.count), mtime: doc.mtime ?? Date().timeIntervalSince1970,
                                contentHash: doc.contentHash ?? DocumentReader.contentHash(text), metadata: metadata,
                                chunks: chunks, embeddings: doc.chunks.map(\.embedding))
    }

    /// Indexes files and folders incrementally: new and changed files are encoded,
    /// unchanged ones skipped without encoding, and files deleted under a given folder
    /// removed. Work is committed in batches, so an interrupted run keeps what it finished
    /// and the next run resumes. Document ids are canonical absolute paths (symlinks, `.` and
    /// `..` resolved), so a file reached through different spellings is one document.
    func indexFiles(_ roots: [String], selection: FileSelection, shouldStop: (() -> Bool)? = nil,
                    progress: ((IndexProgress) -> Void)?) throws -> IndexSummary {
        let start = Date()
        // Before reading what the index holds: another writer could change it meanwhile.
        try writer.lockForWriting(wait: false, onWait: nil)
        var summary = IndexSummary()
        var files: [(path: String, kind: DocumentKind?)] = []
        var folderRoots: [String] = []
        let fm = FileManager.default
        for given in roots {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: given, isDirectory: &isDir) else {
                throw M3SearchError(.notFound, "\(given) does not exist")
            }
            // One document per file, however it was reached: `dir`, `./dir`, `/abs/dir` and
            // a symlinked parent all give the same ids (the walk below follows no symlinks,
            // so every path under a canonical root is canonical too).
            guard let root = Self.canonicalPath(given) else {
                throw M3SearchError(.io, "\(given) cannot be resolved to a canonical path")
            }
            if isDir.boolValue {
                let base = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
                folderRoots.append(base)
                let walker = FileWalker(respectIgnoreFiles: selection.respectIgnoreFiles,
                                        include: selection.include, exclude: selection.exclude)
                let (found, undecodable) = walker.walk(base)
                for rel in found {
                    let path = base == "." ? rel : base + "/" + rel
                    files.append((path, DocumentKind.of(path: path)))
                }
                for rel in undecodable {
                    summary.skipped += 1
                    summary.skippedByReason["name not UTF-8", default: 0] += 1
                    summary.warnings.append("\(base)/\(rel): skipped, its name is not valid UTF-8 (rename it to index it)")
                }
            } else {
                files.append((root, DocumentKind.of(path: root)))
            }
        }

        // Removals: indexed documents under a given folder that are no longer there.
        let present = Set(files.map(\.path))
        let known = try writer.storedDocuments()
        let gone = known.filter { doc in
            !present.contains(doc.path) && folderRoots.contains { root in root == "." ? !doc.path.hasPrefix("/") : doc.path.hasPrefix(root + "/") }
        }
        if !gone.isEmpty { summary.removed = try writer.remove(gone.map(\.path)) }
        let knownByPath = Dictionary(known.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })

        var batch: [PreparedDocument] = []
        var done = 0
        func flush() throws {
            guard !batch.isEmpty else { return }
            try writer.add(batch)
            batch.removeAll()
        }
        for (path, kind) in files {
            // Between documents only: the batch encoded so far is still committed below.
            if shouldStop?() == true {
                summary.interrupted = true
                break
            }
            defer {
                done += 1
                progress?(IndexProgress(filesDone: done, filesTotal: files.count, chunks: summary.chunks,
                                        tokens: summary.tokens, elapsed: Date().timeIntervalSince(start)))
            }
            guard let kind else {
                summary.skipped += 1
                summary.skippedByReason[SkipReason.unsupportedType.summary, default: 0] += 1
                continue
            }
            if let old = knownByPath[path], let attrs = try? fm.attributesOfItem(atPath: path),
               (attrs[.size] as? NSNumber)?.int64Value == old.size,
               (attrs[.modificationDate] as? Date)?.timeIntervalSince1970 == old.mtime {
                summary.unchanged += 1
                continue
            }
            switch DocumentReader.read(path: path, kind: kind, maxBytes: selection.maxFileBytes) {
            case .failure(let reason):
                if case .unreadable = reason {
                    summary.failed += 1
                    summary.warnings.append("\(path): \(reason.summary)")
                } else {
                    summary.skipped += 1
                    // Broken documents are grouped by kind in the counts ("pdf: encrypted…" would
                    // split per message); each file is named in a warning.
                    if case .document = reason {
                        summary.skippedByReason["unreadable \(kind.rawValue)", default: 0] += 1
                        summary.warnings.append("\(path): skipped, \(reason.summary)")
                    } else {
                        summary.skippedByReason[reason.summary, default: 0] += 1
                    }
                    if case .tooLarge = reason { summary.warnings.append("\(path): skipped, \(reason.summary)") }
                }
                // A file that became unreadable or empty no longer matches its old entry.
                if knownByPath[path] != nil { summary.removed += try writer.remove([path]) }
            case .success(let doc):
                if doc.hadInvalidUTF8 { summary.warnings.append("\(path): invalid UTF-8, decoded with replacement characters") }
                if let old = knownByPath[path], old.contentHash == doc.contentHash {
                    try writer.touch(old, size: doc.size, mtime: doc.mtime)
                    summary.unchanged += 1
                    continue
                }
                let prepared = try prepare(path: path, text: doc.text, size: doc.size, mtime: doc.mtime,
                                           contentHash: doc.contentHash, metadata: nil, locations: doc.locations)
                summary.indexed += 1
                summary.chunks += prepared.chunks.count
                summary.tokens += prepared.chunks.reduce(0) { $0 + $1.tokenIDs.count }
                batch.append(prepared)
                if batch.count >= selection.batchDocuments { try flush() }
            }
        }
        try flush()
        // Everything is committed; a failed checkpoint only leaves the log for SQLite to fold later.
        try? writer.checkpoint()
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }

    /// The absolute path of `path` with every symlink, `.` and `..` resolved (realpath(3)),
    /// the id of an indexed file; nil when it cannot be resolved.
    static func canonicalPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(validatingCString: resolved)
    }
}

extension JSONEncoder {
    /// Keys sorted: the same metadata always stores as the same JSON.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
