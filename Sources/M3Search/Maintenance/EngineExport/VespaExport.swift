/// Vespa: an application package and a feed (docs/engines.md, "Vespa").
///
/// - `application/services.xml`, `application/schemas/m3chunk.sd`: a one-node application
///   (`vespa deploy application`). The schema holds the three vectors as tensors plus the
///   tokens as a weighted set for `wand` retrieval, and the rank profile `m3` computes
///   m3search's fusion exactly on every match.
/// - `feed.jsonl`: one put per line (`vespa feed feed.jsonl`), in the document JSON format's
///   short forms: dense `[...]`, sparse `{"<token id>": w}`, ColBERT `{"<row>": [...]}`.
///
/// Vespa accepts only "text characters" in strings and document ids (its
/// `Text.isTextCharacter`: no control characters but tab, LF and CR, no noncharacters).
/// Others become spaces, as Vespa's own `stripInvalidCharacters` does, and a chunk id holding
/// one gives its document the chunk's UUID as id; both are counted in the notes.
struct VespaExport: EngineWriter {
    static let namespace = "m3"
    static let documentType = "m3chunk"
    static let feedFile = "feed.jsonl"
    static let schemaFile = "application/schemas/m3chunk.sd"
    static let servicesFile = "application/services.xml"
    /// `sparse_tokens` weights are integers (Vespa weighted sets): round(1000 · w), at least 1.
    /// They only choose `wand` candidates; the score uses the exact float tensor.
    static let tokenWeightScale: Float = 1000

    private let feed: ExportFile
    private var cleanedStrings = 0
    private var uuidIDs = 0

    init(folder: StagingFolder, snapshot: IndexSnapshot) throws {
        try folder.write(Self.servicesFile, Self.services)
        try folder.write(Self.schemaFile, Self.schema(snapshot))
        feed = try folder.create(Self.feedFile)
    }

    mutating func add(_ c: ExportedChunk) throws {
        let id = c.chunkID
        let idIsText = id.unicodeScalars.allSatisfy(Self.isTextCharacter)
        if !idIsText { uuidIDs += 1 }
        var cleaned = 0
        let clean: (String) -> String = { s in
            guard !s.unicodeScalars.allSatisfy(Self.isTextCharacter) else { return s }
            cleaned += 1
            return String(String.UnicodeScalarView(s.unicodeScalars.map { Self.isTextCharacter($0) ? $0 : " " }))
        }
        try feed.record { w in
            w.raw("{\"put\":"); w.string("id:\(Self.namespace):\(Self.documentType)::" + (idIsText ? id : ChunkUUID.make(id)))
            w.raw(",\"fields\":{")
            ExportRecord.fields(c, to: &w, clean: clean)
            w.raw(",\"dense\":"); try ExportRecord.vector(c.dense, to: &w, chunk: c, name: "dense")
            w.raw(",\"sparse\":"); try ExportRecord.sparseObject(c, to: &w)
            w.raw(",\"sparse_tokens\":{")
            for i in 0 ..< c.sparse.count {
                if i > 0 { w.raw(",") }
                w.raw("\"\(c.sparse.ids[i])\":\(Self.tokenWeight(c.sparse.weights[i]))")
            }
            w.raw("},\"colbert\":{")
            for row in 0 ..< c.colbert.count {
                if row > 0 { w.raw(",") }
                w.raw("\"\(row)\":"); try ExportRecord.vector(c.colbert[row], to: &w, chunk: c, name: "ColBERT")
            }
            w.raw("}}}\n")
        }
        cleanedStrings += cleaned
    }

    mutating func finish() throws -> [String] {
        try feed.close()
        var notes: [String] = []
        if cleanedStrings > 0 {
            notes.append("\(cleanedStrings) string(s) held characters Vespa refuses (control characters, noncharacters); they were replaced by spaces")
        }
        if uuidIDs > 0 {
            notes.append("\(uuidIDs) chunk id(s) hold such characters; those documents are identified by the chunk's UUID (the chunk_id field keeps the id, cleaned)")
        }
        return notes
    }

    /// round(1000 · w) clamped to 1 … Int32.max (`w` is finite: the sparse tensor was checked first).
    static func tokenWeight(_ w: Float) -> Int32 {
        let scaled = (Double(w) * Double(tokenWeightScale)).rounded()
        return scaled >= Double(Int32.max) ? .max : max(1, Int32(max(scaled, 0)))
    }

    /// Vespa's `com.yahoo.text.Text.isTextCharacter`: no C0 controls but tab, LF and CR, no
    /// U+FDD0…U+FDDF, no U+xFFFE/U+xFFFF above the first plane.
    static func isTextCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x80 { return v >= 0x20 || v == 0x09 || v == 0x0A || v == 0x0D }
        if (0xFDD0 ... 0xFDDF).contains(v) { return false }
        return v <= 0xFFFF || v & 0xFFFE != 0xFFFE
    }

    static let services = """
        <?xml version="1.0" encoding="utf-8"?>
        <!-- Written by m3search export (format vespa): one node serving the m3chunk schema. -->
        <services version="1.0">
            <container id="default" version="1.0">
                <search/>
                <document-api/>
            </container>
            <content id="m3" version="1.0">
                <min-redundancy>1</min-redundancy>
                <documents>
                    <document type="\(documentType)" mode="index"/>
                </documents>
                <nodes>
                    <node hostalias="node1" distribution-key="0"/>
                </nodes>
            </content>
        </services>

        """

    /// The schema for the index's dimension, HNSW settings and default weights.
    static func schema(_ snapshot: IndexSnapshot) -> String {
        let s = snapshot.settings, d = s.dimension
        let w = EngineExport.weights(snapshot)
        return """
            # Written by `m3search export --format vespa` for an index of \(d)-dimensional vectors.
            # Rank profile m3 is m3search's fusion, (wd·dense + ws·sparse + wc·colbert) / (wd + ws + wc):
            # dense = dot product, sparse = Σ over shared tokens, colbert = mean over query rows of the
            # best dot product. See docs/engines.md for the query.
            schema \(documentType) {
                document \(documentType) {
                    field chunk_id type string {
                        indexing: summary | attribute
                    }
                    field path type string {
                        indexing: summary | attribute
                    }
                    field chunk type int {
                        indexing: summary | attribute
                    }
                    field char_start type long {
                        indexing: summary
                    }
                    field char_end type long {
                        indexing: summary
                    }
                    field token_count type int {
                        indexing: summary
                    }
                    field text type string {
                        indexing: summary | index
                        index: enable-bm25
                    }
                    field metadata type map<string, string> {
                        indexing: summary
                    }
                    field dense type tensor<float>(x[\(d)]) {
                        indexing: attribute | index
                        attribute {
                            distance-metric: dotproduct
                        }
                        index {
                            hnsw {
                                max-links-per-node: \(s.hnswM)
                                neighbors-to-explore-at-insert: \(s.hnswEfConstruction)
                            }
                        }
                    }
                    field sparse type tensor<float>(token{}) {
                        indexing: attribute
                    }
                    field sparse_tokens type weightedset<string> {
                        indexing: attribute
                        attribute: fast-search
                    }
                    field colbert type tensor<float>(t{}, x[\(d)]) {
                        indexing: attribute
                    }
                }
                rank-profile m3 {
                    inputs {
                        query(q_dense) tensor<float>(x[\(d)])
                        query(q_sparse) tensor<float>(token{})
                        query(q_colbert) tensor<float>(qt{}, x[\(d)])
                        query(w_dense) double: \(w.dense)
                        query(w_sparse) double: \(w.sparse)
                        query(w_colbert) double: \(w.colbert)
                    }
                    function dense_score() {
                        expression: sum(query(q_dense) * attribute(dense))
                    }
                    function sparse_score() {
                        expression: sum(query(q_sparse) * attribute(sparse))
                    }
                    function colbert_score() {
                        expression: reduce(reduce(sum(query(q_colbert) * attribute(colbert), x), max, t), avg, qt)
                    }
                    first-phase {
                        expression: (query(w_dense) * dense_score + query(w_sparse) * sparse_score + query(w_colbert) * colbert_score) / (query(w_dense) + query(w_sparse) + query(w_colbert))
                    }
                    match-features: dense_score sparse_score colbert_score
                }
            }

            """
    }
}
