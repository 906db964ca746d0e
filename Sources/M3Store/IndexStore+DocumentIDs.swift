import Foundation

extension IndexStore {
    /// Meta key recording that file documents have canonical ids (see M3Search's
    /// `IndexWriter.canonicalizeDocumentIDs`): absent in indexes written before m3search
    /// resolved paths, which a writable open then migrates.
    package static let documentIDsKey = "document_ids"
    package static let canonicalDocumentIDs = "canonical"

    /// Changes a document's id (path); the caller makes sure no other document has it.
    package func renameDocument(id: Int64, to path: String) throws {
        try db.prepare("UPDATE documents SET path = ? WHERE id = ?").run([.text(path), .int(id)])
    }
}
