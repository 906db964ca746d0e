import Foundation
import M3Index
import M3Model
import M3Store

/// What results show of a document: its id (path) and metadata.
struct DocumentInfo: Sendable {
    var path: String
    var metadata: [String: String]?
}

/// The in-memory half of an open index, rebuilt from one snapshot of the file without
/// running HNSW construction again: the dense graph (from its image when current), the
/// sparse postings (or, for an index opened for searching, a cache filled per query
/// token), the document table, the vector codec (with the ColBERT codebook once trained)
/// and the saved weights.
struct IndexState {
    var hnsw: HNSWIndex
    var sparse: SparseIndex
    var documents: [Int64: DocumentInfo]
    var codec: ChunkCodec
    /// Norms of the dense vectors of an index created with `normalize` false, by chunk id:
    /// the inner-product graph holds their directions (it needs unit vectors), and the
    /// dense score multiplies the norm back (`denseScore`). Empty for normalised indexes.
    var denseNorms: [Int64: Float] = [:]
    /// Weights saved in the file (`setDefaultWeights`); nil: `SearchIndex.builtInWeights`.
    var savedWeights: FusionWeights?
    /// The file's commit count this state mirrors (`IndexStore.commitCount`).
    var commit: Int64 = 0
    /// The image's slots when the index opened for exact scans (`DenseCandidates.exactScan`);
    /// `hnsw` is then an empty graph and each search scans the image's rows.
    var scan: ImageScan?
    /// One search's scanned vectors (its candidates'), which `denseScore` reads in scan mode.
    var scannedVectors: [Int64: [Float]] = [:]
    /// Set in scan mode: `documents` stays empty and searches read their results' documents
    /// from the file (`IndexReader.documentInfo`); the file's count at open.
    var documentsOnDemand: Int?

    /// Documents in the index.
    var documentCount: Int { documentsOnDemand ?? documents.count }

    /// Live chunks.
    var chunkCount: Int { scan?.count ?? hnsw.count }

    /// Whether the chunk is live in this state.
    func containsChunk(_ id: Int64) -> Bool { scan.map { $0.contains(id) } ?? hnsw.contains(id: id) }

    /// A copy the writer may change while searches read `self`: the graph is copied (it
    /// changes in place), the rest is copy-on-write and is copied as it is changed.
    ///
    /// Cost per write, linear in the index: the graph's flat buffers (slots × (vector row +
    /// 4·(2M + 1) + ~20 bytes)); then, when changed, the id maps (document table, norms,
    /// the graph's id → slot) and the sparse index's token → list and chunk → tokens maps
    /// (one reference per entry; posting lists themselves are copied only when touched).
    func writable() -> IndexState {
        var next = self
        next.hnsw = hnsw.copy()
        return next
    }

    /// Reads the state from the file, all from one read transaction (its commit count too), so a writer committing
    /// meanwhile cannot pair one commit's graph with another's chunks; the graph holds its
    /// vectors as `graphEncoding` says (`IndexSettings.graphEncoding` when an index opens;
    /// reloads keep the open graph's). Damage found by the decoders is reported as
    /// `StoreError.corrupt`.
    ///
    /// `postingsOnDemand`: the posting lists stay in the file and each query reads its own
    /// tokens' (`SparseIndex.onDemand`); what an index opened for searching does. A writer
    /// loads them all before its first change (`IndexWriter.transaction`).
    /// `useImage: false` loads the graph row by row even when a current image exists (the
    /// reference `check` compares the image with).
    static func load(from store: IndexStore, settings: IndexSettings, graphEncoding: HNSWIndex.VectorEncoding,
                     postingsOnDemand: Bool = false, useImage: Bool = true) throws -> IndexState {
        var timings = IndexOpenTimings()
        return try load(from: store, settings: settings, graphEncoding: graphEncoding, postingsOnDemand: postingsOnDemand,
                        useImage: useImage, timings: &timings)
    }

    /// `load`, saying where the time went in `timings` (its `documents`, `postings`,
    /// `graphRecords`, `denseVectors` and `graphFinish`).
    /// `scanImage`: keep only the image's slots for exact scans (`DenseCandidates.exactScan`)
    /// when the file has a current image, instead of the graph.
    static func load(from store: IndexStore, settings: IndexSettings, graphEncoding: HNSWIndex.VectorEncoding,
                     postingsOnDemand: Bool = false, useImage: Bool = true, scanImage: Bool = false,
                     timings: inout IndexOpenTimings) throws -> IndexState {
        try store.read {
            do {
                return try decode(store, settings: settings, graphEncoding: graphEncoding, postingsOnDemand: postingsOnDemand,
                                  useImage: useImage, scanImage: scanImage, timings: &timings)
            } catch let error as IndexError {
                throw StoreError.corrupt(path: store.path, detail: "\(error)")
            }
        }
    }

    /// Every posting list of the file, decoded and checked (call inside a read or write
    /// transaction of the commit wanted). Damage is `StoreError.corrupt`.
    static func loadPostings(_ store: IndexStore) throws -> SparseIndex {
        do {
            var loader = SparseIndex.Loader(expectedTokens: try store.postingListCount())
            try store.forEachPosting { token, bytes in try loader.add(token: token, bytes: Array(bytes)) }
            return loader.finish()
        } catch let error as IndexError {
            throw StoreError.corrupt(path: store.path, detail: "\(error)")
        }
    }

    private static func decode(_ store: IndexStore, settings: IndexSettings, graphEncoding encoding: HNSWIndex.VectorEncoding,
                               postingsOnDemand: Bool, useImage: Bool, scanImage: Bool,
                               timings: inout IndexOpenTimings) throws -> IndexState {
        var clock = DispatchTime.now()
        /// Seconds since the last lap (and starts the next).
        func lap() -> Double {
            let now = DispatchTime.now()
            defer { clock = now }
            return Double(now.uptimeNanoseconds - clock.uptimeNanoseconds) / 1e9
        }
        let codec = settings.codec.with(codebook: try loadCodebook(store, dimension: settings.dimension, storage: settings.colbertStorage))
        let header = try store.hnswHeader()
        if scanImage, let header, let scan = try loadScan(store, header: header, settings: settings, encoding: encoding, timings: &timings) {
            // One search: its results' documents are read with them, not all of them now.
            _ = lap()  // the scan's slots' time is `timings.graphImage`
            let empty = try HNSWIndex(parameters: .init(dimension: settings.dimension, m: settings.hnswM,
                                                        efConstruction: settings.hnswEfConstruction, encoding: encoding))
            var state = IndexState(hnsw: empty, sparse: postingsOnDemand ? SparseIndex.onDemand() : try loadPostings(store),
                                   documents: [:], codec: codec, savedWeights: try loadSavedWeights(store), commit: try store.commitCount())
            state.scan = scan
            state.documentsOnDemand = try store.documentCount()
            timings.documents = lap()
            return state
        }
        _ = lap()
        var documents: [Int64: DocumentInfo] = [:]
        var denseNorms: [Int64: Float] = [:]
        for d in try store.documents() { documents[d.id] = DocumentInfo(path: d.path, metadata: decodeMetadata(d.metadata)) }
        timings.documents = lap()

        let sparse = postingsOnDemand ? SparseIndex.onDemand() : try loadPostings(store)
        timings.postings = lap()

        let hnsw: HNSWIndex
        let imaged = useImage ? try header.flatMap { header in
            try loadImage(store, header: header, settings: settings, encoding: encoding, timings: &timings)
        } : nil
        if let imaged {
            hnsw = imaged
            _ = lap()  // the image's time is `timings.graphImage`
        } else if let header {
            // Records first (small: links only), then each vector straight into its slot, so
            // no decoded copy of every vector is held at once.
            var loader = try HNSWIndex.Loader(meta: header, encoding: encoding)
            loader.reserve(slots: try store.hnswNodeCount())
            var liveRecords: [Int64: HNSWNodeRecord] = [:]
            var failure: Error?
            try store.forEachHNSWNode { slot, stored in
                guard failure == nil else { return }
                do {
                    let record = try HNSWNodeRecord(slot: slot, stored: stored)
                    if record.state == .live { liveRecords[record.id] = record } else { try loader.add(record, vector: []) }
                } catch { failure = error }
            }
            if let failure { throw StoreError.corrupt(path: store.path, detail: "\(failure)") }
            timings.graphRecords = lap()
            try store.forEachDenseVector { id, blob in
                guard let record = liveRecords.removeValue(forKey: id) else { return }
                if encoding == .int8 && settings.denseStorage == .int8 {
                    // The stored codes themselves (after the float32 scale, which cosine does not need).
                    guard blob.count == DenseStorage.int8.bytes(dimension: settings.dimension) else {
                        throw StoreError.corrupt(path: store.path, detail: "dense vector of chunk \(id) has \(blob.count) bytes")
                    }
                    try loader.add(record, codes: UnsafeRawBufferPointer(rebasing: blob[4...]))
                } else {
                    guard let v = codec.decodeDense(blob) else {
                        throw StoreError.corrupt(path: store.path, detail: "dense vector of chunk \(id) has \(blob.count) bytes")
                    }
                    if settings.normalize {
                        try loader.add(record, vector: v)
                    } else {
                        let (direction, norm) = Self.direction(of: v)
                        denseNorms[id] = norm
                        try loader.add(record, vector: direction)
                    }
                }
            }
            // A live node whose chunk is gone: the loader would report the slot as missing.
            if let (id, record) = liveRecords.first {
                throw StoreError.corrupt(path: store.path, detail: "HNSW node slot \(record.slot) holds chunk \(id), which has no row")
            }
            timings.denseVectors = lap()
            hnsw = try loader.finish()
            timings.graphFinish = lap()
        } else {
            hnsw = try HNSWIndex(parameters: .init(dimension: settings.dimension, m: settings.hnswM,
                                                   efConstruction: settings.hnswEfConstruction, encoding: encoding))
        }
        return IndexState(hnsw: hnsw, sparse: sparse, documents: documents, codec: codec, denseNorms: denseNorms,
                          savedWeights: try loadSavedWeights(store), commit: try store.commitCount())
    }

    /// The graph from its image (`HNSWIndex+Image.swift`), or nil, saying why in
    /// `timings.graphSource`, when the file has none that is current for this commit and
    /// encoding, or the one it has is damaged: then the caller loads row by row (the rows are
    /// the source of truth, so a bad image costs time, never answers). Unnormalised indexes
    /// keep per-chunk norms beside the graph and always load row by row.
    private static func loadImage(_ store: IndexStore, header: [UInt8], settings: IndexSettings,
                                  encoding: HNSWIndex.VectorEncoding, timings: inout IndexOpenTimings) throws -> HNSWIndex? {
        try fromCurrentImage(store, header: header, settings: settings, encoding: encoding, timings: &timings) { manifest, timings in
            var loader = try HNSWIndex.Loader(meta: header, encoding: encoding)
            // Room for the slots whose rows the file actually holds, at once (no regrowth).
            let rowBytes = HNSWIndex.rowBytes(encoding: encoding, dimension: settings.dimension)
            loader.reserve(slots: try store.graphImageBytes(from: 1) / max(1, rowBytes))
            for k in 0 ..< manifest.segments {
                // Each segment's pages through a memory map (see withMappedReads), dropped
                // after the segment: mapped pages count in the process's resident memory
                // while mapped, and this keeps them to one segment (~9 MB of int8 rows), not
                // the whole image. (serve's peak at 100k chunks, 580 MB, came later, with the
                // model, either way; mapping per segment cost nothing measurable.)
                let found: Bool? = try store.withMappedReads {
                    try store.withGraphImagePart(2 * k + 1) { links in
                        var rowsFound = false
                        try loader.addImageSegment(k, segmentSlots: manifest.segmentSlots, links: links) { rows in
                            rowsFound = try store.readGraphImagePart(2 * k + 2, into: rows)
                        }
                        return rowsFound
                    }
                }
                guard found == true else {
                    throw IndexError.corrupt(what: "graph image", detail: "segment \(k) of \(manifest.segments) is missing")
                }
            }
            let hnsw = try loader.finish()
            timings.graphSource = "image"
            return hnsw
        }
    }

    /// What `body` loads from the file's current image (`currentManifest`), timed as
    /// `timings.graphImage`; nil, saying why in `timings.graphSource`, when there is none or
    /// `body` finds it damaged (`IndexError`, or `StoreError.corrupt`): the rows are the
    /// source of truth, so a bad image costs time, never answers.
    private static func fromCurrentImage<T>(_ store: IndexStore, header: [UInt8], settings: IndexSettings,
                                            encoding: HNSWIndex.VectorEncoding, timings: inout IndexOpenTimings,
                                            _ body: (HNSWIndex.ImageManifest, inout IndexOpenTimings) throws -> T?) throws -> T? {
        let start = DispatchTime.now()
        defer { timings.graphImage = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }
        do {
            guard let manifest = try currentManifest(store, header: header, settings: settings, encoding: encoding, timings: &timings) else {
                return nil
            }
            return try body(manifest, &timings)
        } catch let error as IndexError {
            timings.graphSource = "rows (graph image damaged: \(error))"
        } catch let error as StoreError {
            guard case .corrupt = error else { throw error }
            timings.graphSource = "rows (graph image damaged: \(error))"
        }
        return nil
    }

    /// The image's manifest when the file has an image current for this commit, header and
    /// encoding; nil, saying why in `timings.graphSource`, when not. Throws when it is damaged.
    private static func currentManifest(_ store: IndexStore, header: [UInt8], settings: IndexSettings,
                                        encoding: HNSWIndex.VectorEncoding, timings: inout IndexOpenTimings) throws -> HNSWIndex.ImageManifest? {
        guard settings.normalize else { timings.graphSource = "rows (unnormalised index)"; return nil }
        guard try store.hasGraphImageTable() else { timings.graphSource = "rows (format without graph image)"; return nil }
        guard let manifest = try store.withGraphImagePart(0, { try HNSWIndex.ImageManifest(bytes: Array($0)) }) else {
            timings.graphSource = "rows (no graph image yet: written at checkpoint)"
            return nil
        }
        guard manifest.commit == (try store.commitCount()), manifest.header == header else {
            timings.graphSource = "rows (graph image of commit \(manifest.commit) is stale: written at checkpoint)"
            return nil
        }
        guard manifest.encoding == encoding else {
            timings.graphSource = "rows (graph image holds \(manifest.encoding) rows, the graph opens as \(encoding))"
            return nil
        }
        return manifest
    }

    /// The image's slots for exact scans (`DenseCandidates.exactScan`): only its links parts
    /// are read (ids and states, checked); the rows stay in the file until a search scans
    /// them. Nil, saying why in `timings.graphSource`, when the file has no current image
    /// or it is damaged: the caller then loads the graph.
    private static func loadScan(_ store: IndexStore, header: [UInt8], settings: IndexSettings,
                                 encoding: HNSWIndex.VectorEncoding, timings: inout IndexOpenTimings) throws -> ImageScan? {
        try fromCurrentImage(store, header: header, settings: settings, encoding: encoding, timings: &timings) { manifest, timings in
            var scan = try ImageScan(manifest: manifest, storedBytes: try store.graphImageBytes(from: 1))
            for k in 0 ..< manifest.segments {
                guard try store.withGraphImagePart(2 * k + 1, { links in try scan.addLinks(k, links) }) != nil else {
                    throw IndexError.corrupt(what: "graph image", detail: "segment \(k) of \(manifest.segments) is missing")
                }
            }
            try scan.finish()
            timings.graphSource = "image, scanned per search (exact dense candidates; no graph loaded)"
            return scan
        }
    }

    /// What `check` finds of the graph image (call inside the read transaction that loaded
    /// `reference` row by row): parts failing their checksum, a manifest that does not
    /// parse, and for an image stamped with this commit and header, an image the open would
    /// refuse or one that does not hold the graph the rows hold (a forged stamp over other
    /// parts would make opens search that graph). A stale stamp is a note: the next
    /// checkpoint rewrites the image and opens read the rows meanwhile.
    static func verifyGraphImage(_ store: IndexStore, settings: IndexSettings,
                                 reference: HNSWIndex) throws -> (problems: [String], notes: [String]) {
        guard settings.normalize, try store.hasGraphImageTable() else { return ([], []) }
        var problems = try store.graphImageDamagedParts().map { "graph image part \($0) fails its checksum" }
        let manifest: HNSWIndex.ImageManifest
        do {
            guard let m = try store.withGraphImagePart(0, { try HNSWIndex.ImageManifest(bytes: Array($0)) }) else {
                let note = problems.isEmpty ? ["graph image: none stored yet (written at the next checkpoint)"] : []
                return (problems + (try store.graphImageBytes(from: 1) > 0 ? ["graph image: parts stored without a manifest"] : []), note)
            }
            manifest = m
        } catch let error as IndexError {
            return (problems + ["graph image: \(error)"], [])
        } catch let error as StoreError {
            guard case .corrupt = error else { throw error }
            return (problems, [])  // part 0 is listed as failing its checksum already
        }
        let commit = try store.commitCount()
        guard let header = try store.hnswHeader(), manifest.commit == commit, manifest.header == header else {
            return (problems, ["graph image is stale: it stamps commit \(manifest.commit), the file is at commit \(commit) "
                               + "(opens read the rows until the next checkpoint rewrites it)"])
        }
        guard problems.isEmpty else { return (problems, []) }
        var timings = IndexOpenTimings()
        guard let imaged = try loadImage(store, header: header, settings: settings, encoding: manifest.encoding, timings: &timings) else {
            return (["graph image stamped as current is not usable: \(timings.graphSource)"], [])
        }
        if let difference = imaged.differenceFrom(reference) {
            problems.append("graph image stamped as current differs from the graph the rows hold: \(difference)")
        }
        return (problems, [])
    }

    /// v = norm · direction, with ‖direction‖ = 1: what the graph holds of an unnormalised
    /// vector. A zero (or non-finite) vector gets the first axis and norm 0, so it scores 0.
    static func direction(of v: [Float]) -> (direction: [Float], norm: Float) {
        let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0, norm.isFinite else {
            var axis = [Float](repeating: 0, count: v.count)
            if !axis.isEmpty { axis[0] = 1 }
            return (axis, 0)
        }
        return (v.map { $0 / norm }, norm)
    }

    /// The graph's vector for a chunk as the dense score needs it: query · stored vector
    /// (the direction times its norm for an unnormalised index).
    func denseScore(_ query: [Float], chunkID: Int64) -> Float? {
        guard let v = scan != nil ? scannedVectors[chunkID] : hnsw.vector(forID: chunkID) else { return nil }
        let dot = Scores.dense(query, v)
        return denseNorms.isEmpty ? dot : dot * (denseNorms[chunkID] ?? 1)
    }

    /// The ColBERT product quantiser stored in the index, if any.
    /// Its subspaces must be the code bytes per row that `storage` stores: a header that
    /// disagrees with the codes would make every decode read past a row (issue 16, item 7).
    static func loadCodebook(_ store: IndexStore, dimension: Int, storage: ColBERTStorage) throws -> ProductQuantizer? {
        guard let data = try store.codebook(name: "colbert") else { return nil }
        do {
            let pq = try ProductQuantizer(serialized: Array(data))
            guard pq.dimension == dimension else { throw IndexError.dimensionMismatch(expected: dimension, actual: pq.dimension) }
            guard case .productQuantized = storage, pq.subspaces == storage.bytesPerRow(dimension: dimension) else {
                throw IndexError.corrupt(what: "codebook", detail: "\(pq.subspaces) subspaces, but the index stores ColBERT rows as \(storage)"
                    + " (\(storage.bytesPerRow(dimension: dimension)) bytes per row)")
            }
            return pq
        } catch {
            throw StoreError.corrupt(path: store.path, detail: "ColBERT codebook: \(error)")
        }
    }

    /// The default weights saved in the file: "dense,sparse,colbert" as decimal text.
    static func loadSavedWeights(_ store: IndexStore) throws -> FusionWeights? {
        guard let text = try store.savedWeights() else { return nil }
        do { return try FusionWeights(parsing: text) } catch {
            throw StoreError.corrupt(path: store.path, detail: "meta \(IndexStore.MetaKey.defaultWeights) \"\(text)\" is not three weights (\(error))")
        }
    }

    static func decodeMetadata(_ json: String?) -> [String: String]? {
        guard let json, let data = json.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: data)
    }
}

/// The index's published state, which searches read without waiting for writes.
///
/// A published `IndexState` never changes: its value parts (postings, document table) are
/// copy-on-write, and its graph, a class changed in place by inserts, is copied by the
/// writer before it changes anything (`writable()`). So a search holds a state as long as
/// it likes, and the lock is held only to copy the struct out (a few retains), never
/// across a write.
///
/// A state is paired with the file by its `commit` count. The writer stages its next state
/// just before COMMIT and publishes it after, so a read transaction that already sees a
/// commit always finds that commit's state here (`state(atCommit:)`), even in the moment
/// between COMMIT and publishing.
final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var published: IndexState
    /// The writer's next state while its COMMIT runs (nil otherwise).
    private var staged: IndexState?

    init(_ state: IndexState) { published = state }

    /// The newest published state.
    var current: IndexState { lock.withLock { published } }

    func read<T>(_ body: (IndexState) throws -> T) rethrows -> T { try body(current) }

    /// The state of commit `count`, if it is the published or the staged one.
    func state(atCommit count: Int64) -> IndexState? {
        lock.withLock {
            if published.commit == count { return published }
            if let staged, staged.commit == count { return staged }
            return nil
        }
    }

    /// The writer's next state, complete and final, before its COMMIT (nil: the write failed).
    func stage(_ state: IndexState?) { lock.withLock { staged = state } }

    /// Makes `state` the one new searches read. Searches already running keep theirs.
    func publish(_ state: IndexState) {
        lock.withLock {
            published = state
            staged = nil
        }
    }
}
