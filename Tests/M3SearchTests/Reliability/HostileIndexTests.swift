import Foundation
@testable import M3Search
@testable import M3Store
import XCTest

/// Issue 16, items 4, 6, 7, 8 (index side) and 11: index files written by an attacker, or
/// damaged where no decoder looks, and `export --out` onto things that are not files. Every
/// case must end in a clear error (or a clean repair) within seconds, and nothing planted in
/// a file may ever run.
final class HostileIndexTests: XCTestCase {
    let modelFolder = fixture("models/tiny-safetensors")
    var dir: URL!
    var mounts: [String] = []
    nonisolated(unsafe) static var base: (dir: URL, path: String)?

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for m in mounts.reversed() { DiskTests.run("/bin/umount", [m]) }
        try? FileManager.default.removeItem(at: dir)
    }

    static let words = ["harbor", "lantern", "granite", "meadow", "copper", "falcon", "river", "violet", "summit", "cedar"]

    /// A checkpointed 12-document index (pq16 ColBERT, so that codebooks and PQ codes can be
    /// damaged; int8 dense), built once.
    func baseIndex() throws -> String {
        if let base = Self.base { return base.path }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m3-hostile-base-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("base.m3index").path
        do {
            let index = try SearchIndex(path: path, model: try BGEM3(folder: modelFolder), options: IndexOptions(maxLength: 32, overlap: 4,
                                                                                                                   colbertStorage: .productQuantized(dimensionsPerCode: 16)))
            index.codebookMinimumRows = 1  // train the PQ codebook on the first batch
            try index.add((0 ..< 12).map { i in
                DocumentInput(id: "doc\(i)", text: "File \(i): " + (0 ..< 10 + i).map { Self.words[($0 * 7 + i * 3) % Self.words.count] }.joined(separator: " "))
            })
            try index.store.checkpoint()
        }
        Self.base = (dir, path)
        return path
    }

    func copy(_ name: String, damage sql: String? = nil) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: try baseIndex(), toPath: path)
        if let sql { try SQLiteConnection(path: path, mode: .readWrite).execute(sql) }
        return path
    }

    func count(_ path: String, _ sql: String) throws -> Int64 {
        try SQLiteConnection(path: path, mode: .readOnly).scalarInt(sql) ?? -1
    }

    /// Runs m3search, killing it after `seconds`: a hang fails the test instead of stalling it.
    func run(_ arguments: [String], seconds: Double = 60) throws -> (status: Int32, out: String, err: String, elapsed: Double, exited: Bool) {
        let child = try M3SearchChild(arguments)
        let result = child.finish(seconds: seconds)
        return (result.status, result.stdout, result.stderr, child.elapsed, child.process.terminationReason == .exit)
    }

    // MARK: - Item 6: attacker SQL

    /// A trigger deleting documents on the engine's own inserts, and one rewriting chunk
    /// texts: the file is refused by every command, `check` names them, `check --repair`
    /// drops them, and neither ever fires.
    func testPlantedTriggersNeverFire() throws {
        let path = try copy("trigger.m3index", damage: """
            CREATE TRIGGER wipe AFTER INSERT ON documents BEGIN DELETE FROM documents WHERE id <> NEW.id; END;
            CREATE TRIGGER rewrite AFTER INSERT ON chunks BEGIN UPDATE chunks SET text = 'pwned'; END;
            """)
        let documents = try count(path, "SELECT count(*) FROM documents")
        XCTAssertEqual(documents, 12)
        XCTAssertThrowsError(try SearchIndex(path: path, model: try BGEM3(folder: modelFolder))) { error in
            XCTAssertEqual((error as? M3SearchError)?.kind, .corrupt, "\(error)")
            XCTAssertTrue("\(error)".contains("trigger rewrite on chunks") && "\(error)".contains("trigger wipe on documents"), "\(error)")
        }
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data("A new note about copper lanterns.".utf8).write(to: docs.appendingPathComponent("new.txt"))
        let index = try run(["index", docs.path, "--index", path, "--model", modelFolder])
        XCTAssertEqual(index.status, 65, index.err)
        XCTAssertTrue(index.err.contains("did not create") && index.err.contains("check --repair"), index.err)
        XCTAssertEqual(try count(path, "SELECT count(*) FROM documents"), documents, "nothing written")

        let check = try run(["check", "--index", path, "--model", modelFolder])
        XCTAssertEqual(check.status, 3, check.out + check.err)
        XCTAssertTrue(check.out.contains("problem: trigger wipe on documents"), check.out)
        let repair = try run(["check", "--repair", "--index", path, "--model", modelFolder])
        XCTAssertEqual(repair.status, 0, repair.out + repair.err)
        XCTAssertTrue(repair.out.contains("removed: trigger rewrite on chunks") && repair.out.hasSuffix("ok\n"), repair.out)
        XCTAssertEqual(try count(path, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"), 0)

        let again = try run(["index", docs.path, "--index", path, "--model", modelFolder])
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertEqual(try count(path, "SELECT count(*) FROM documents"), documents + 1)
        XCTAssertEqual(try count(path, "SELECT count(*) FROM chunks WHERE text = 'pwned'"), 0)
    }

    /// Defence in depth: even on a connection that skipped the schema check, a trigger does
    /// not fire and a view cannot be read (the connection disables both).
    func testHardenedConnectionRunsNoTriggerOrView() throws {
        let path = try copy("raw.m3index", damage: """
            CREATE TRIGGER wipe AFTER INSERT ON m3_meta BEGIN DELETE FROM documents; END;
            CREATE VIEW peek AS SELECT * FROM documents;
            """)
        let db = try SQLiteConnection(path: path, mode: .readWrite)
        try db.execute("INSERT INTO m3_meta(key, value) VALUES('probe', 'x')")
        XCTAssertEqual(try db.scalarInt("SELECT count(*) FROM documents"), 12)
        XCTAssertThrowsError(try db.scalarInt("SELECT count(*) FROM peek"))
        XCTAssertThrowsError(try db.execute("PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql = 'x' WHERE name = 'chunks'"))
    }

    /// A view standing in for `chunks` (the table renamed away) would put its text into
    /// results: refused; `check --repair` cannot fix an own table, so it still reports it.
    func testViewReplacingChunksIsRefused() throws {
        let path = try copy("view.m3index", damage: """
            ALTER TABLE chunks RENAME TO chunks_real;
            CREATE VIEW chunks AS SELECT id, document_id, ordinal, char_start, char_end, token_count,
                'INJECTED' AS text, dense, sparse, colbert FROM chunks_real;
            """)
        let query = try run(["query", "harbor lantern", "--index", path, "--model", modelFolder])
        XCTAssertEqual(query.status, 65, query.err)
        XCTAssertFalse(query.out.contains("INJECTED"))
        XCTAssertTrue(query.err.contains("view chunks is not the one m3search creates"), query.err)
        for arguments in [["check"], ["check", "--repair"]] {
            let check = try run(arguments + ["--index", path, "--model", modelFolder])
            XCTAssertEqual(check.status, 3, check.out + check.err)
            XCTAssertTrue(check.out.contains("problem: view chunks is not the one m3search creates"), check.out)
        }
        XCTAssertFalse(try SearchIndex.inspectSchema(at: path).damaged.isEmpty)
    }

    /// A recursive view used to make every command spin at 100 % CPU: now each refuses the
    /// file at once (nothing reads the view), and `check --repair` drops it.
    func testRecursiveViewErrorsWithinSeconds() throws {
        let path = try copy("loop.m3index", damage: """
            CREATE VIEW spin AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r;
            CREATE INDEX extra ON documents(size);
            """)
        for arguments in [["info"], ["query", "harbor"], ["check"]] {
            let r = try run(arguments + ["--index", path] + (arguments[0] == "info" ? [] : ["--model", modelFolder]), seconds: 30)
            XCTAssertNotEqual(r.status, 0, "\(arguments): \(r.out)")
            XCTAssertTrue((r.out + r.err).contains("view spin"), "\(arguments): \(r.out) \(r.err)")
            XCTAssertLessThan(r.elapsed, 10, "\(arguments)")
        }
        XCTAssertEqual(try SearchIndex.removeForeignSchemaObjects(at: path).sorted(), ["index extra on documents", "view spin"])
        XCTAssertTrue(try SearchIndex.inspectSchema(at: path).isSound)
    }

    /// The time limit on statements while an index opens interrupts a runaway query.
    func testOpenTimeLimitInterruptsARunawayStatement() throws {
        let db = try SQLiteConnection(path: ":memory:", mode: .create)
        let start = Date()
        XCTAssertThrowsError(try db.withTimeLimit(seconds: 0.5) {
            try db.scalarInt("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r")
        }) { error in
            guard case StoreError.corrupt(_, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(detail.contains("longer than"), detail)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    // MARK: - Item 4: missing or garbled meta rows

    func testMissingOrGarbledMetaRowsAreDamageNotAnEmptyIndex() throws {
        for (name, sql, expected) in [
            ("no-header", "DELETE FROM m3_meta WHERE key = 'hnsw_header'", "hnsw_header is missing"),
            ("bad-header", "UPDATE m3_meta SET value = '%%%' WHERE key = 'hnsw_header'", "hnsw_header is not base64"),
            ("no-version", "DELETE FROM m3_meta WHERE key = 'format_version'", "format_version is missing"),
        ] {
            let path = try copy("\(name).m3index", damage: sql)
            let nodes = try count(path, "SELECT count(*) FROM hnsw_nodes")
            let query = try run(["query", "harbor lantern", "--index", path, "--model", modelFolder])
            XCTAssertEqual(query.status, 65, "\(name): \(query.err)")
            XCTAssertTrue(query.err.contains("is damaged") && query.err.contains(expected), "\(name): \(query.err)")
            XCTAssertFalse(query.err.contains("no documents"), name)
            let docs = dir.appendingPathComponent("docs-\(name)")
            try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
            try Data("violet summit".utf8).write(to: docs.appendingPathComponent("a.txt"))
            let index = try run(["index", docs.path, "--index", path, "--model", modelFolder])
            XCTAssertNotEqual(index.status, 0, "\(name): \(index.out)")
            XCTAssertEqual(try count(path, "SELECT count(*) FROM hnsw_nodes"), nodes, "\(name): the graph is kept")
            let check = try run(["check", "--index", path, "--model", modelFolder])
            XCTAssertNotEqual(check.status, 0, "\(name): \(check.out)")
            XCTAssertTrue((check.out + check.err).contains(expected), "\(name): \(check.out) \(check.err)")
        }
    }

    // MARK: - Items 7 and 8: not a regular file, impossible ranges, codebook headers

    func testIndexPathThatIsNotARegularFileIsAClearError() throws {
        let folder = dir.appendingPathComponent("folder.m3index").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let fifo = dir.appendingPathComponent("fifo.m3index").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let docs = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data("copper falcon".utf8).write(to: docs.appendingPathComponent("a.txt"))
        // The device through a link in our own folder: should a command ever write by path
        // (a lock beside it, a rename onto it), it lands here, never in /dev.
        let device = dir.appendingPathComponent("zero-device").path
        try FileManager.default.createSymbolicLink(atPath: device, withDestinationPath: "/dev/zero")
        for (path, kind) in [(folder, "a directory"), (fifo, "a FIFO"), (device, "a character device")] {
            for command in [["query", "x"], ["index", docs.path], ["info"], ["check"], ["export"]] {
                let r = try run(command + ["--index", path] + (["export", "info"].contains(command[0]) ? [] : ["--model", modelFolder]), seconds: 20)
                XCTAssertEqual(r.status, 65, "\(command[0]) \(path): \(r.err)")
                XCTAssertTrue(r.err.contains("it is \(kind)"), "\(command[0]) \(path): \(r.err)")
                XCTAssertLessThan(r.elapsed, 10)
            }
        }
        var info = stat()
        XCTAssertEqual(stat(fifo, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO, "the FIFO is left alone")
    }

    func testChunkRangesNearTheIntegerLimitsAreReported() throws {
        for (name, start, end) in [("max", Int64.max - 2, Int64.max), ("min", Int64.min, Int64.min + 3), ("span", Int64.min, Int64.max)] {
            let path = try copy("range-\(name).m3index", damage: """
                DROP TABLE chunk_checksums; -- a file without row checksums: the range checks themselves must hold
                UPDATE chunks SET char_start = \(start), char_end = \(end) WHERE id = (SELECT min(id) FROM chunks)
                """)
            let check = try run(["check", "--index", path, "--model", modelFolder])
            XCTAssertEqual(check.status, 3, "\(name): \(check.out) \(check.err)")
            XCTAssertTrue(check.out.contains("character range"), "\(name): \(check.out)")
            // Searching and exporting may answer or refuse, but never trap.
            let query = try run(["query", "harbor lantern", "--index", path, "--model", modelFolder, "--chunks", "--k", "50"])
            XCTAssertTrue(query.exited && [0, 65].contains(query.status), "\(name): \(query.status) \(query.err)")
            let export = try run(["export", "--index", path])
            XCTAssertTrue(export.exited && [0, 65].contains(export.status), "\(name): \(export.status) \(export.err)")
        }
    }

    /// Metadata is not covered by the row checksums and reads drop what does not decode, so
    /// damaged metadata gave `"metadata": null` while `check` said ok (found with the FuzzIndex
    /// seed issue16-chunk-metadata-v3). `check` now names the chunk and the document.
    func testUndecodableMetadataIsReportedByCheck() throws {
        let path = try copy("metadata.m3index", damage: """
            UPDATE chunks SET metadata = '{not json' WHERE id = (SELECT min(id) FROM chunks);
            UPDATE documents SET metadata = '["a list"]' WHERE id = (SELECT max(id) FROM documents)
            """)
        let document = try XCTUnwrap(try IndexStore(path: path, readOnly: true).documents().max { $0.id < $1.id }?.path)
        let check = try run(["check", "--index", path, "--model", modelFolder])
        XCTAssertEqual(check.status, 3, "\(check.out) \(check.err)")
        XCTAssertTrue(check.out.contains("chunk ") && check.out.contains(": its metadata is not a JSON object of strings"), check.out)
        XCTAssertTrue(check.out.contains("document \(document): its metadata is not a JSON object of strings"), check.out)
    }

    /// A codebook whose header says 32 codes per row while the rows hold 16: `check` used
    /// to say ok and every query trapped.
    func testCodebookDisagreeingWithItsCodesIsReported() throws {
        let path = try copy("codebook.m3index")
        do {
            let store = try IndexStore(path: path)
            let stored = try XCTUnwrap(try store.codebook(name: "colbert"))
            let pq = try ProductQuantizer(serialized: Array(stored))
            XCTAssertEqual(pq.subspaces * 16, pq.dimension, "the base index stores pq16")
            let wider = try ProductQuantizer(dimension: pq.dimension, subspaces: pq.subspaces * 2, centroids: pq.centroids)
            try store.write { try store.putCodebook(name: "colbert", data: Data(wider.serialized())) }
        }
        let check = try run(["check", "--index", path, "--model", modelFolder])
        XCTAssertNotEqual(check.status, 0, check.out)
        XCTAssertTrue((check.out + check.err).contains("subspaces"), check.out + check.err)
        let query = try run(["query", "harbor lantern", "--index", path, "--model", modelFolder])
        XCTAssertEqual(query.status, 65, query.err)
        XCTAssertTrue(query.err.contains("codebook"), query.err)
    }

    // MARK: - Item 5: damage that still decodes

    /// Rewrites one chunk's `column` with `change` applied to its bytes (no checksum update).
    func damage(_ path: String, column: String, _ change: (inout [UInt8]) -> Void) throws -> Int64 {
        let db = try SQLiteConnection(path: path, mode: .readWrite)
        let id = try XCTUnwrap(try db.scalarInt("SELECT min(id) FROM chunks"))
        let s = try db.prepare("SELECT \(column) FROM chunks WHERE id = ?")
        try s.bind([.int(id)])
        XCTAssertTrue(try s.step())
        var bytes = [UInt8](column == "text" ? Data(s.text(0).utf8) : s.blob(0))
        change(&bytes)
        try db.prepare("UPDATE chunks SET \(column) = ? WHERE id = ?")
            .run([column == "text" ? .text(String(decoding: bytes, as: UTF8.self)) : .blob(Data(bytes)), .int(id)])
        return id
    }

    /// A flipped sign of an int8 dense scale and rewritten PQ codes used to remove the top hit
    /// while `check` said ok; a changed letter in a text was invisible too.
    func testRowDamageThatStillDecodesIsCaughtByChecksums() throws {
        let dimension = try IndexStore(path: try baseIndex(), readOnly: true).settings().dimension
        let sign = try copy("dense-sign.m3index")
        let signID = try damage(sign, column: "dense") { bytes in
            XCTAssertEqual(bytes.count, 4 + dimension, "the base index stores int8 dense vectors")
            bytes[3] ^= 0x80  // the float32 scale's sign bit
        }
        let codes = try copy("pq-codes.m3index")
        let codesID = try damage(codes, column: "colbert") { bytes in for i in bytes.indices { bytes[i] = bytes[i] &+ 1 } }
        let text = try copy("text.m3index")
        let textID = try damage(text, column: "text") { bytes in bytes[bytes.count - 1] ^= 0x01 }
        for (path, id, what) in [(sign, signID, "dense vector"), (codes, codesID, "ColBERT vectors"), (text, textID, "text")] {
            let check = try run(["check", "--index", path, "--model", modelFolder])
            XCTAssertEqual(check.status, 3, "\(what): \(check.out) \(check.err)")
            XCTAssertTrue(check.out.contains("chunk \(id): the stored \(what)") && check.out.contains("fails its checksum"), "\(what): \(check.out)")
            let export = try run(["export", "--index", path])
            XCTAssertEqual(export.status, 65, "\(what): \(export.err)")
        }
        // Reads verify what they read: the dense blob when the graph loads, the ColBERT blob
        // when a search rescores.
        for (path, what) in [(sign, "dense vector"), (codes, "ColBERT vectors")] {
            let query = try run(["query", "harbor lantern", "--index", path, "--model", modelFolder])
            XCTAssertEqual(query.status, 65, "\(what): \(query.err)")
            XCTAssertTrue(query.err.contains("the stored \(what) fails its checksum"), "\(what): \(query.err)")
        }
    }

    /// An index from before row checksums: read-only it is "not yet checked" (and sound);
    /// the first writable open computes every row's checksums, and deletes remove them.
    func testIndexesWithoutChecksumsGetThemOnTheFirstWritableOpen() throws {
        let path = try copy("legacy.m3index", damage: "DROP TABLE chunk_checksums")
        let chunks = try count(path, "SELECT count(*) FROM chunks")
        do {
            let index = try SearchIndex(path: path, model: try BGEM3(folder: modelFolder), options: .existing(readOnly: true))
            XCTAssertTrue(try index.check().isSound)
        }
        XCTAssertEqual(try count(path, "SELECT count(*) FROM sqlite_master WHERE name = 'chunk_checksums'"), 0, "read-only changes nothing")
        do {
            let index = try SearchIndex(path: path, model: try BGEM3(folder: modelFolder), options: .existing(readOnly: false))
            XCTAssertEqual(try count(path, "SELECT count(*) FROM chunk_checksums"), chunks)
            XCTAssertTrue(try index.check().isSound)
            _ = try index.remove(["doc3"])
        }
        XCTAssertEqual(try count(path, "SELECT count(*) FROM chunk_checksums"), try count(path, "SELECT count(*) FROM chunks"))
        _ = try damage(path, column: "text") { bytes in bytes[0] ^= 0x01 }
        let check = try run(["check", "--index", path, "--model", modelFolder])
        XCTAssertEqual(check.status, 3, check.out)
    }

    // MARK: - Item 11: export --out

    func testExportRefusesLinksAndDevicesAndWritesThroughFIFOs() throws {
        let index = try baseIndex()
        let reference = try run(["export", "--index", index])
        XCTAssertEqual(reference.status, 0, reference.err)
        XCTAssertGreaterThan(reference.out.count, 10_000)

        let victim = dir.appendingPathComponent("victim.txt").path
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: victim))
        let link = dir.appendingPathComponent("link.jsonl").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        // A device node of the test's own (a copy of /dev/full's numbers) rather than
        // /dev/full itself: a regression must not replace a shared system device.
        let device = dir.appendingPathComponent("full-device").path
        let haveDevice = mknod(device, S_IFCHR | 0o600, dev_t((1 << 8) | 7)) == 0
        var targets = [(link, "a symbolic link"), (dir.path, "a directory")]
        if haveDevice { targets.append((device, "a device")) }
        for (target, kind) in targets {
            let r = try run(["export", "--index", index, "--out", target])
            XCTAssertEqual(r.status, 64, "\(target): \(r.err)")
            XCTAssertTrue(r.err.contains("is \(kind)"), r.err)
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "keep me")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), victim)
        if haveDevice {
            var info = stat()
            XCTAssertEqual(stat(device, &info), 0)
            XCTAssertEqual(info.st_mode & S_IFMT, S_IFCHR, "the device node is still a device")
        }

        // A FIFO is written through, byte for byte what stdout gets.
        let fifo = dir.appendingPathComponent("pipe").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        nonisolated(unsafe) var received = Data()
        let reader = Thread { received = FileHandle(forReadingAtPath: fifo)?.readDataToEndOfFile() ?? Data() }
        reader.start()
        let piped = try run(["export", "--index", index, "--out", fifo])
        while !reader.isFinished { usleep(10_000) }
        XCTAssertEqual(piped.status, 0, piped.err)
        XCTAssertEqual(String(decoding: received, as: UTF8.self), reference.out)
        var fifoInfo = stat()
        XCTAssertEqual(stat(fifo, &fifoInfo), 0)
        XCTAssertEqual(fifoInfo.st_mode & S_IFMT, S_IFIFO)

        // A regular file is replaced whole; `-` is stdout.
        let file = dir.appendingPathComponent("out.jsonl").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(try run(["export", "--index", index, "--out", file]).status, 0)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), reference.out)
        XCTAssertEqual(try run(["export", "--index", index, "--out", "-"]).out, reference.out)
    }

    /// A write error on standard output (here /dev/full): a clear error, not exit 0.
    func testExportWriteErrorsAreReported() throws {
        let index = try baseIndex()
        let p = Process()
        p.executableURL = m3searchBinary
        p.arguments = ["export", "--index", index]
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/full")
        let errURL = dir.appendingPathComponent("err")
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        p.waitUntilExit()
        let err = try String(contentsOf: errURL, encoding: .utf8)
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 74, err)  // EX_IOERR (disk full)
        XCTAssertTrue(err.contains("No space left on device"), err)
    }

    /// On a full filesystem (a small tmpfs): a clear error, no partial file, and an existing
    /// file at the path keeps its contents.
    func testExportOntoAFullFilesystemLeavesNothing() throws {
        let fs = dir.appendingPathComponent("small").path
        try FileManager.default.createDirectory(atPath: fs, withIntermediateDirectories: true)
        guard DiskTests.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8k", "tmpfs", fs]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs: needs root with CAP_SYS_ADMIN, as in CI")
        }
        mounts.append(fs)
        let index = try baseIndex()
        for existing in [false, true] {
            let out = fs + "/export.jsonl"
            if existing { try Data("earlier export".utf8).write(to: URL(fileURLWithPath: out)) }
            let r = try run(["export", "--index", index, "--out", out])
            XCTAssertEqual(r.status, 74, r.err)
            XCTAssertTrue(r.err.contains("No space left on device"), r.err)
            let left = try FileManager.default.contentsOfDirectory(atPath: fs)
            XCTAssertEqual(left, existing ? ["export.jsonl"] : [], "no partial file")
            if existing { XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "earlier export") }
        }
    }
}
