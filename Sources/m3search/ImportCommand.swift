import ArgumentParser
import Foundation
import M3Search

/// `m3search import`: load an `m3search export` file into an index without encoding anything.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Load an `m3search export` JSON Lines file into a new or compatible index (no encoding).",
        discussion: """
        The header line's settings create the index (chunk length, overlap, pooling, normalisation, HNSW \
        parameters) and its saved default weights, if any, are kept. The model is still needed: an index is \
        bound to the model that made its vectors, so the model's identity must equal the header's modelID \
        (an export written before identity v2 records the model's first-generation identity, which is accepted). \
        The whole file is validated before anything is written; an error names the line.
        """)

    @Argument(help: "The export file (JSON Lines from `m3search export`).", completion: .file())
    var file: String

    @OptionGroup var location: IndexLocation

    @Option(name: .long, help: "Documents per committed transaction.")
    var batch: Int = 64

    @Flag(name: .long, help: "When another process is writing the index, wait for it to finish instead of failing.")
    var wait = false

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        // Pass 1: validate every line, so a bad file changes nothing.
        let header = try Self.read(file) { _ in }
        let model = try location.modelOptions.load()
        var s = header.settings
        switch model.matchIdentity(s.modelID) {
        case .same:
            break
        case .legacy:
            // Written before identity v2 by this model's files as the old identity saw them:
            // compared, and recorded in the index, as this model's identity v2.
            note("\(file) records the model identity of m3search before v2; it is this model's, accepted")
            s.modelID = model.identity
        case .different:
            throw M3SearchError(.incompatible, "\(file) was exported from an index of model \(s.modelID.prefix(16))…, but the model found "
                + "(\(location.modelOptions.model ?? "from $M3SEARCH_MODEL or the Hugging Face cache")) is \(model.identity.prefix(16))…. "
                + "Pass --model with the model the index was built with.")
        }
        let existed = FileManager.default.fileExists(atPath: location.index)
        // A new index takes the exported index's storage; an existing one keeps its own.
        var options = IndexOptions(
            maxLength: s.maxLength, overlap: s.overlap, pooling: s.pooling, normalize: s.normalize,
            hnswM: s.hnswM, hnswEfConstruction: s.hnswEfConstruction,
            colbertStorage: existed ? nil : s.colbertStorage, denseStorage: existed ? nil : s.denseStorage,
            colbertPruning: existed ? nil : s.colbertPruning, queryPrefix: s.queryPrefix, passagePrefix: s.passagePrefix)
        options.encodedPrecision = s.precision
        let index = try SearchIndex(path: location.index, model: model, options: options)
        noteIdentityUpgrade(index)
        for line in index.notes { note(line) }
        try index.lockForWriting(wait: wait) { holder in
            FileHandle.standardError.write(Data("waiting: \(location.index) is being written by \(holder?.description ?? "another process")\n".utf8))
        }
        var ours = index.settings, theirs = s
        // Vectors arrive as float32 and are stored the index's way.
        ours.colbertStorage = theirs.colbertStorage
        ours.denseStorage = theirs.denseStorage
        ours.colbertPruning = theirs.colbertPruning
        ours.hnswM = theirs.hnswM; ours.hnswEfConstruction = theirs.hnswEfConstruction  // graph shape, not vectors
        if let difference = ours.firstDifference(from: theirs) {
            throw M3SearchError(.incompatible, "\(location.index) is not compatible with \(file): \(difference). Import into a new --index path.")
        }
        // Pass 2: add the documents in batches, each one transaction.
        var pending: [SearchIndex.EncodedDocument] = []
        var documents = 0, chunks = 0
        _ = try Self.read(file) { doc in
            pending.append(doc)
            documents += 1
            chunks += doc.chunks.count
            if pending.count == batch { try index.add(encoded: pending); pending.removeAll() }
        }
        if !pending.isEmpty { try index.add(encoded: pending) }
        if !existed, let w = header.defaultWeights { try index.setDefaultWeights(w) }
        print("imported \(documents) documents, \(chunks) chunks into \(location.index)")
    }

    struct Header {
        var settings: IndexSettings
        var defaultWeights: FusionWeights?
        var documents: Int
        var chunks: Int
    }

    /// Reads and validates the whole file, calling `document` for each complete document
    /// (its chunks are consecutive lines). Memory: one document at a time.
    static func read(_ file: String, document: (SearchIndex.EncodedDocument) throws -> Void) throws -> Header {
        var lines = try LineReader(path: file)
        func problem(_ message: String) -> M3SearchError {
            M3SearchError(.invalidInput, "\(file):\(lines.lineNumber): \(message)")
        }
        guard let first = try lines.next() else { throw M3SearchError(.invalidInput, "\(file) is empty; expected an `m3search export` file") }
        let header = try parseHeader(first, problem: problem)
        let d = header.settings.dimension
        var current: SearchIndex.EncodedDocument?
        var finished = Set<String>()
        var documents = 0, chunks = 0
        while let line = try lines.next() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let object: [String: StrictJSON]
            do {
                guard let o = try StrictJSON.parse(line, numberArraysAsFloats: true).members else { throw problem("expected a JSON object") }
                object = o
            } catch let e as StrictJSON.Failure { throw problem("invalid JSON: \(e)") }
            let fields = try ChunkFields(object, dimension: d, problem: problem)
            if current?.id != fields.docID {
                if let done = current {
                    finished.insert(done.id)
                    documents += 1
                    try document(done)
                }
                guard !finished.contains(fields.docID) else {
                    throw problem("document \"\(fields.docID)\" appeared earlier; a document's chunks must be consecutive lines")
                }
                current = .init(id: fields.docID, metadata: fields.metadata, chunks: [],
                                size: fields.size, mtime: fields.mtime, contentHash: fields.contentHash)
            }
            guard fields.ordinal == current!.chunks.count else {
                throw problem("expected chunk \(current!.chunks.count) of \"\(fields.docID)\", found chunk \(fields.ordinal); chunks must be numbered 0, 1, … in order")
            }
            current!.chunks.append(fields.chunk)
            chunks += 1
        }
        if let done = current { documents += 1; try document(done) }
        guard documents == header.documents, chunks == header.chunks else {
            throw M3SearchError(.invalidInput, "\(file) holds \(documents) documents and \(chunks) chunks, but its header announces "
                                         + "\(header.documents) and \(header.chunks): the file is truncated or was edited")
        }
        return header
    }

    static func parseHeader(_ line: [UInt8], problem: (String) -> M3SearchError) throws -> Header {
        guard let o = (try? StrictJSON.parse(line))?.members,
              case .string(ExportCommand.formatName)? = o["format"] else {
            throw problem("the first line is not an `m3search export` header ({\"format\": \"\(ExportCommand.formatName)\", …})")
        }
        guard case .number(let v)? = o["version"], Int(v) == ExportCommand.formatVersion else {
            throw problem("unsupported export version (this m3search reads version \(ExportCommand.formatVersion)); use the m3search that wrote it")
        }
        guard let s = o["settings"]?.members else { throw problem("the header has no \"settings\" object") }
        func text(_ key: String) throws -> String {
            guard case .string(let t)? = s[key], !t.isEmpty else { throw problem("settings.\(key) must be a non-empty string") }
            return t
        }
        func int(_ key: String, min: Int) throws -> Int {
            guard case .number(let t)? = s[key], let n = Int(t), n >= min else { throw problem("settings.\(key) must be an integer ≥ \(min)") }
            return n
        }
        guard case .bool(let normalize)? = s["normalize"] else { throw problem("settings.normalize must be true or false") }
        guard let pooling = Pooling(rawValue: try text("pooling")) else { throw problem("settings.pooling must be cls, mean or max") }
        // Headers written before the storage keys existed: float16 ColBERT, float32 dense, no pruning.
        guard let colbertStorage = ColBERTStorage((try? text("colbertStorage")) ?? "f16") else {
            throw problem("settings.colbertStorage must be one of \(ColBERTStorage.names)")
        }
        guard let denseStorage = DenseStorage((try? text("denseStorage")) ?? "f32") else {
            throw problem("settings.denseStorage must be f32, f16 or int8")
        }
        guard let colbertPruning = ColBERTPruning((try? text("colbertPrune")) ?? "none") else {
            throw problem("settings.colbertPrune must be none or near-duplicates:<cos>")
        }
        // Headers written before the prefixes existed: none. Precision: unrecorded when absent.
        func optionalText(_ key: String) throws -> String? {
            switch s[key] {
            case nil, .null?: return nil
            case .string(let t)?: return t
            default: throw problem("settings.\(key) must be a string")
            }
        }
        let precision = try optionalText("precision").map { text in
            guard let p = Precision(text) else { throw problem("settings.precision must be f32, bf16 or int8") }
            return p
        }
        let settings = IndexSettings(modelID: try text("modelID"), dimension: try int("dimension", min: 1),
                                     maxLength: try int("maxLength", min: 3), overlap: try int("overlap", min: 0),
                                     pooling: pooling, normalize: normalize, hnswM: try int("hnswM", min: 2),
                                     hnswEfConstruction: try int("hnswEfConstruction", min: 1),
                                     colbertStorage: colbertStorage, denseStorage: denseStorage, colbertPruning: colbertPruning,
                                     queryPrefix: try optionalText("queryPrefix") ?? "", passagePrefix: try optionalText("passagePrefix") ?? "",
                                     precision: precision)
        var weights: FusionWeights?
        switch o["default_weights"] {
        case nil, .null?: weights = nil
        case .object?:
            let w = o["default_weights"]
            guard case .number(let a)? = w?["dense"], case .number(let b)? = w?["sparse"], case .number(let c)? = w?["colbert"],
                  let parsed = try? FusionWeights(parsing: "\(a),\(b),\(c)") else {
                throw problem("default_weights must be {\"dense\", \"sparse\", \"colbert\"} non-negative numbers, not all zero")
            }
            weights = parsed
        default: throw problem("default_weights must be an object or null")
        }
        guard case .number(let docs)? = o["documents"], let documents = Int(docs), documents >= 0,
              case .number(let ch)? = o["chunks"], let chunks = Int(ch), chunks >= 0 else {
            throw problem("the header needs \"documents\" and \"chunks\" counts")
        }
        return Header(settings: settings, defaultWeights: weights, documents: documents, chunks: chunks)
    }

    /// One chunk line, checked field by field.
    struct ChunkFields {
        var docID: String
        var ordinal: Int
        var metadata: [String: String]?
        var size: Int64?
        var mtime: Double?
        var contentHash: String?
        var chunk: SearchIndex.EncodedChunk

        init(_ o: [String: StrictJSON], dimension d: Int, problem: (String) -> M3SearchError) throws {
            func string(_ key: String) throws -> String {
                guard case .string(let s)? = o[key] else { throw problem("\"\(key)\" must be a string (found \(o[key]?.kind ?? "nothing"))") }
                return s
            }
            func int(_ key: String) throws -> Int {
                guard case .number(let t)? = o[key], let n = Int(t), n >= 0 else { throw problem("\"\(key)\" must be a non-negative integer") }
                return n
            }
            func float(_ v: StrictJSON, _ what: String) throws -> Float {
                guard case .number(let t) = v, let f = Float(t), f.isFinite else { throw problem("\(what) must be a finite float32 number") }
                return f
            }
            let known: Set<String> = ["id", "doc_id", "chunk", "char_start", "char_end", "token_count", "text", "metadata",
                                      "chunk_metadata", "source", "dense", "sparse", "colbert"]
            if let unknown = o.keys.first(where: { !known.contains($0) }) { throw problem("unknown field \"\(unknown)\"") }
            docID = try string("doc_id")
            guard !docID.isEmpty else { throw problem("\"doc_id\" is empty") }
            ordinal = try int("chunk")
            guard try string("id") == "\(docID)#\(ordinal)" else { throw problem("\"id\" must be \"<doc_id>#<chunk>\"") }
            let text = try string("text")
            let start = try int("char_start"), end = try int("char_end")
            guard start <= end else { throw problem("char_start \(start) is after char_end \(end)") }
            let tokenCount = try int("token_count")
            func strings(_ key: String) throws -> [String: String]? {
                switch o[key] {
                case nil, .null?: return nil
                case .object(let m)?:
                    var out: [String: String] = [:]
                    for (k, v) in m {
                        guard case .string(let s) = v else { throw problem("\(key) \"\(k)\" must be a string") }
                        out[k] = s
                    }
                    return out
                default: throw problem("\"\(key)\" must be an object of strings or null")
                }
            }
            metadata = try strings("metadata")
            let chunkMetadata = try strings("chunk_metadata")
            switch o["source"] {
            case nil, .null?: break
            case let s? where s.members != nil:
                if case .number(let t)? = s["size"] {
                    guard let n = Int64(t), n >= 0 else { throw problem("source.size must be a non-negative integer") }
                    size = n
                }
                if case .number(let t)? = s["mtime"] {
                    guard let x = Double(t), x.isFinite else { throw problem("source.mtime must be a number") }
                    mtime = x
                }
                if case .string(let h)? = s["content_hash"] { contentHash = h }
            default: throw problem("\"source\" must be an object or null")
            }

            guard case .floats(let dense)? = o["dense"], dense.count == d else {
                throw problem("\"dense\" must be an array of \(d) numbers")
            }
            guard dense.allSatisfy(\.isFinite) else { throw problem("a dense value is not a finite float32 number") }

            guard case .object(let sparseObject)? = o["sparse"] else { throw problem("\"sparse\" must be an object {\"<token id>\": weight}") }
            var pairs: [(Int32, Float)] = []
            for (key, v) in sparseObject {
                guard let id = Int32(key), id >= 0 else { throw problem("sparse key \"\(key)\" is not a token id") }
                let w = try float(v, "sparse weight of token \(key)")
                guard w > 0 else { throw problem("sparse weight of token \(key) must be positive") }
                pairs.append((id, w))
            }
            pairs.sort { $0.0 < $1.0 }

            guard case .array(let rows)? = o["colbert"] else { throw problem("\"colbert\" must be an array of \(d)-value rows") }
            var values: [Float] = []
            values.reserveCapacity(rows.count * d)
            for (r, row) in rows.enumerated() {
                guard case .floats(let items) = row, items.count == d else { throw problem("colbert row \(r) must hold \(d) numbers") }
                guard items.allSatisfy(\.isFinite) else { throw problem("colbert row \(r) has a value that is not a finite float32 number") }
                values.append(contentsOf: items)
            }
            let embedding = Embedding(tokenIDs: [], dense: dense, sparse: SparseVector(ids: pairs.map(\.0), weights: pairs.map(\.1)),
                                      colbert: MultiVector(dimension: d, values: values))
            chunk = SearchIndex.EncodedChunk(text: text, tokenCount: tokenCount, embedding: embedding, charRange: start ..< end,
                                             metadata: chunkMetadata)
        }
    }
}

private extension StrictJSON {
    /// An object's members by key (the parser refuses duplicate keys, so none is lost).
    var members: [String: StrictJSON]? {
        guard case .object(let m) = self else { return nil }
        return Dictionary(m.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    }
}
