import Foundation
import M3Store

/// The migration to canonical document ids.
///
/// m3search used to store a file's path as it was typed, so one folder indexed as `notes`,
/// `./notes` and `/home/me/notes` held every file three times. Files now get canonical
/// absolute ids (`Ingestion.canonicalPath`); this brings an older index in line on its
/// first writable open: each file document gets its canonical id, and copies of one file
/// under several spellings merge into the newest (the others are removed with their chunks,
/// graph nodes and postings), in one transaction.
///
/// A document counts as a file only when its id resolves (against the current folder when
/// relative) to an existing file whose size and modification time are the ones stored:
/// that is what indexing recorded, while ids given to `add` carry the time they were added.
/// Those, and files that are gone or changed since, keep their ids (a later `indexFiles`
/// run of their folder replaces changed files under the canonical id).
extension IndexWriter {
    /// Migrates when the index has not been migrated yet and this writer can take the
    /// writer lock without waiting; returns how many documents changed id and how many
    /// duplicates were removed (nil: nothing to do or not now: read-only or locked).
    @discardableResult
    func canonicalizeDocumentIDs() throws -> (renamed: Int, merged: Int)? {
        guard !store.readOnly, try store.meta(IndexStore.documentIDsKey) != IndexStore.canonicalDocumentIDs else { return nil }
        // Another writer: the next open migrates. The lock is not kept past the migration
        // unless this writer already held it.
        let held = writerLock != nil
        do { try lockForWriting(wait: false, onWait: nil) } catch { return nil }
        defer { if !held { releaseWriteLock() } }
        let documents = try storedDocuments()
        guard try store.meta(IndexStore.documentIDsKey) != IndexStore.canonicalDocumentIDs else { return nil }

        // Canonical id → the stored documents that are that file.
        var copies: [String: [DocumentRecord]] = [:]
        for d in documents {
            guard let canonical = Self.canonicalFileID(d) else { continue }
            copies[canonical, default: []].append(d)
        }
        var removals: [String] = [], renames: [(id: Int64, path: String)] = []
        for (canonical, docs) in copies {
            // The newest copy: latest mtime, then the last inserted.
            guard let kept = docs.max(by: { ($0.mtime, $0.id) < ($1.mtime, $1.id) }) else { continue }
            removals += docs.filter { $0.id != kept.id }.map(\.path)
            if kept.path != canonical { renames.append((kept.id, canonical)) }
        }
        let stored = Set(documents.map(\.path))
        // A canonical id held by a document that is not the file (or a changed copy of it)
        // stays with that document: rename nothing onto it.
        renames.removeAll { r in stored.contains(r.path) && !removals.contains(r.path) }
        // One write: the duplicates' removal, the renames and the mark, published together.
        try exclusively {
            try transaction { state in
                if !removals.isEmpty {
                    _ = try apply([], removing: removals, to: &state)
                    if state.hnsw.deletedCount > 0 { state.hnsw.compact() }
                }
                for r in renames {
                    try store.renameDocument(id: r.id, to: r.path)
                    state.documents[r.id]?.path = r.path
                }
                try store.setMeta(IndexStore.documentIDsKey, IndexStore.canonicalDocumentIDs)
            }
        }
        return (renames.count, removals.count)
    }

    /// The canonical id of a stored document that is an indexed file as recorded (same size
    /// and mtime), else nil.
    static func canonicalFileID(_ d: DocumentRecord) -> String? {
        guard !d.path.isEmpty, let canonical = Ingestion.canonicalPath(d.path) else { return nil }
        var info = stat()
        guard stat(canonical, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int64(info.st_size) == d.size else { return nil }
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: canonical),
              (attrs[.modificationDate] as? Date)?.timeIntervalSince1970 == d.mtime else { return nil }
        return canonical
    }
}
