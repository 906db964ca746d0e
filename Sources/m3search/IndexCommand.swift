import ArgumentParser
import Foundation
import M3Search

/// `m3search index`: add folders and files to an index, incrementally.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Index folders and files (incremental: unchanged files are not encoded again).",
        discussion: """
        Reads plain text, Markdown, reStructuredText, HTML (visible text only), source code, PDF (page numbers \
        in each chunk's metadata), DOCX, ODT and EPUB (sections). Other files are skipped and counted; broken \
        or encrypted documents are skipped with a warning naming them. In folders, hidden files and what \
        .gitignore (in a git work tree), .ignore and .git/info/exclude list are skipped, as ripgrep does. New \
        and changed files are encoded, deleted files removed. Work is committed in batches: an interrupted run \
        keeps what it finished, and the next run resumes. Ctrl-C stops after the current document: the run \
        commits what it encoded, prints its summary and exits 130 (a second Ctrl-C exits at once).
        """)

    @Argument(help: "Folders and files to index.", completion: .file())
    var paths: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "A JSONL corpus to index (repeatable): BEIR corpus.jsonl {\"_id\", \"title\", \"text\", \"metadata\"} or {\"id\", \"title\", \"text\", \"metadata\"} lines; ids are kept, title and text joined by a space.",
        valueName: "file"), completion: .file())
    var jsonl: [String] = []

    @OptionGroup var location: IndexLocation

    @Option(name: .long, help: "Tokens per chunk, <s> and </s> included (fixed when the index is created).")
    var maxLength: Int = 512

    @Option(name: .long, help: "Tokens shared by consecutive chunks (fixed when the index is created).")
    var overlap: Int = 64

    @Option(name: .long, help: "Only index files matching this glob (repeatable; gitignore syntax: a glob without / matches a name at any depth, dir/** what is inside dir).")
    var include: [String] = []

    @Option(name: .long, help: "Skip files and folders matching this glob (repeatable; gitignore syntax).")
    var exclude: [String] = []

    @Flag(name: .long, help: "Do not read .gitignore, .ignore or .git/info/exclude.")
    var noIgnore = false

    @Option(name: .long, help: "Skip files larger than this many bytes.")
    var maxFileSize: Int64 = 64 << 20

    @Option(name: .long, help: "Dense pooling: cls (BGE-M3's training), mean (e5 and many fine-tunes) or max (fixed when the index is created; default cls).")
    var pooling: Pooling?

    @Flag(name: .long, help: "Do not L2-normalise the dense and ColBERT vectors; dense scores are then inner products (fixed when the index is created).")
    var noNormalize = false

    @Option(name: .long, help: ArgumentHelp(
        "Text put before every query, e.g. \"query: \" for e5 models (fixed when the index is created; default none).", valueName: "text"))
    var queryPrefix: String?

    @Option(name: .long, help: ArgumentHelp(
        "Text put before every passage, e.g. \"passage: \" for e5 models; its tokens count against --max-length (fixed when the index is created; default none).",
        valueName: "text"))
    var passagePrefix: String?

    @Option(name: .long, help: "HNSW links per node, M (fixed when the index is created).")
    var hnswM: Int = 16

    @Option(name: .long, help: "HNSW construction breadth, efConstruction (fixed when the index is created).")
    var efConstruction: Int = 200

    @Option(name: .long, help: ArgumentHelp(
        "ColBERT storage: f16, int8, binary, pq2|pq4|pq8|pq16|pq32|pq64 (fixed when the index is created; default: the most faithful codec within \(SearchIndex.defaultColBERTRowBudget) bytes per row, pq4 for BGE-M3's 1024-d, pq2 at 384-d, int8 up to 296-d; PQ rows stay float16 until 4,096 rows train the codebook; `m3search info` shows each codec's measured cost).",
        valueName: "storage"))
    var colbertStorage: String?

    @Option(name: .long, help: ArgumentHelp(
        "Dense storage: f32, f16 or int8 (fixed when the index is created; default \(SearchIndex.defaultDenseStorage)).",
        valueName: "storage"))
    var denseStorage: String?

    @Option(name: .long, help: ArgumentHelp(
        "ColBERT rows kept: none, or near-duplicates[:cos] to drop a row as similar as cos (default 0.95) to the last kept one (fixed at creation).",
        valueName: "rule"))
    var colbertPrune: String?

    @Option(name: .long, help: "Documents per committed batch.")
    var batch: Int = 16

    @Flag(name: .long, help: "When another process is writing the index, wait for it to finish instead of failing.")
    var wait = false

    func validate() throws {
        if paths.isEmpty && jsonl.isEmpty { throw ValidationError("give folders or files to index, or --jsonl FILE") }
        if maxLength < 8 { throw ValidationError("--max-length must be at least 8") }
        if overlap < 0 || overlap >= maxLength - 2 { throw ValidationError("--overlap must be between 0 and max-length − 3") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if hnswM < 2 || hnswM > 128 { throw ValidationError("--hnsw-m must be between 2 and 128") }
        if efConstruction < 1 { throw ValidationError("--ef-construction must be at least 1") }
        if let c = colbertStorage, ColBERTStorage(c) == nil {
            throw ValidationError("--colbert-storage \(c) is unknown; choose from \(ColBERTStorage.names)")
        }
        if let d = denseStorage, DenseStorage(d) == nil {
            throw ValidationError("--dense-storage \(d) is unknown; choose from f32, f16, int8")
        }
        if let p = colbertPrune, ColBERTPruning(p) == nil {
            throw ValidationError("--colbert-prune \(p) is unknown; use none or near-duplicates[:cos] with 0 < cos ≤ 1")
        }
    }

    func run() throws {
        // From the start: a Ctrl-C while the model loads stops before the first document.
        let interrupt = Interrupt("stopping after the current document")
        let searchIndex = try location.open(IndexOptions(maxLength: maxLength, overlap: overlap, pooling: pooling ?? .cls,
                                                         normalize: !noNormalize, hnswM: hnswM,
                                                         hnswEfConstruction: efConstruction,
                                                         colbertStorage: colbertStorage.flatMap(ColBERTStorage.init),
                                                         denseStorage: denseStorage.flatMap { DenseStorage($0) },
                                                         colbertPruning: colbertPrune.flatMap(ColBERTPruning.init),
                                                         queryPrefix: queryPrefix ?? "", passagePrefix: passagePrefix ?? ""))
        // Encoding settings given explicitly must be those the index was created with: its
        // vectors were computed with them.
        let s = searchIndex.settings
        let asked: [(IndexSettings.Mismatch.Setting, String?, String)] = [
            (.pooling, pooling?.rawValue, s.pooling.rawValue),
            (.normalize, noNormalize ? "off" : nil, s.normalize ? "on" : "off"),
            (.queryPrefix, queryPrefix.map { "\"\($0)\"" }, "\"\(s.queryPrefix)\""),
            (.passagePrefix, passagePrefix.map { "\"\($0)\"" }, "\"\(s.passagePrefix)\"")]
        for (setting, value, recorded) in asked {
            if let value, value != recorded {
                throw IndexSettings.Mismatch(path: location.index, setting: setting, recorded: recorded, requested: value)
            }
        }
        try searchIndex.lockForWriting(wait: wait) { holder in
            let who = holder?.description ?? "another process"
            FileHandle.standardError.write(Data("waiting: \(location.index) is being written by \(who)\n".utf8))
        }
        if searchIndex.settings.maxLength != maxLength || searchIndex.settings.overlap != overlap {
            note("\(location.index) was created with --max-length \(searchIndex.settings.maxLength) --overlap \(searchIndex.settings.overlap); using those")
        }
        var bar = ProgressBar()
        let selection = FileSelection(include: include, exclude: exclude, maxFileBytes: maxFileSize, batchDocuments: batch,
                                      respectIgnoreFiles: !noIgnore)
        var summary = IndexSummary()
        if !paths.isEmpty {
            summary = try searchIndex.indexFiles(paths, selection: selection, progress: { bar?.draw($0) },
                                                 shouldStop: { interrupt.isRaised })
        }
        bar?.finish()
        if !jsonl.isEmpty && !summary.interrupted {
            let lines = try searchIndex.indexJSONL(jsonl, batchDocuments: batch)
            summary.indexed += lines.indexed
            summary.unchanged += lines.unchanged
            summary.skipped += lines.skipped
            summary.chunks += lines.chunks
            summary.tokens += lines.tokens
            summary.seconds += lines.seconds
            summary.warnings += lines.warnings
            summary.skippedByReason.merge(lines.skippedByReason, uniquingKeysWith: +)
        }
        for w in summary.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
        var line = "indexed \(summary.indexed), unchanged \(summary.unchanged), skipped \(summary.skipped), removed \(summary.removed), failed \(summary.failed)"
        line += String(format: "; %d chunks, %d tokens in %.1fs", summary.chunks, summary.tokens, summary.seconds)
        if !summary.skippedByReason.isEmpty {
            line += " (skipped: " + summary.skippedByReason.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")"
        }
        print(line)
        print("index: \(location.index) — \(searchIndex.documentCount) documents, \(searchIndex.chunkCount) chunks")
        if summary.interrupted {
            FileHandle.standardError.write(Data("interrupted: rerun the same command to resume\n".utf8))
            throw ExitCode(130)
        }
    }
}
