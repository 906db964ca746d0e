// A model's identity: one digest over every input that changes token ids or vectors.
import Foundation

extension BGEM3 {
    /// How an identity recorded elsewhere (an index's settings) relates to this model.
    public enum IdentityMatch: Sendable, Equatable {
        /// The same files, byte for byte.
        case same
        /// A first-generation identity (m3search before identity v2), which sampled the
        /// weights and ignored tokenizer.json, equals this model's. Accept it once and
        /// record `identity` in its place: the old hash cannot say more.
        case legacy
        /// Another model, or these files changed.
        case different
    }

    /// Compares a recorded identity with this model. A first-generation identity is
    /// recomputed the old way (reads ~4 MB) only when `recorded` has the old form.
    ///
    /// ```swift
    /// switch model.matchIdentity(settings.modelID) {
    /// case .same: break
    /// case .legacy: settings.modelID = model.identity   // upgrade the record, once
    /// case .different: throw …
    /// }
    /// ```
    public func matchIdentity(_ recorded: String) -> IdentityMatch {
        if recorded == identity { return .same }
        guard Self.isLegacyIdentity(recorded), let legacy = try? legacyIdentity() else { return .different }
        return legacy == recorded ? .legacy : .different
    }

    /// True for the 16-hex-digit identities of m3search before identity v2.
    public static func isLegacyIdentity(_ identity: String) -> Bool {
        identity.utf8.count == 16 && identity.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The identity string: "m3id2:" and 32 hex digits of XXH3-128 over the role and
    /// content digest of each file (see `ContentHash`).
    static func identity(parts: [(role: String, digest: Digest128?)]) -> String {
        var stream = Array("m3search model identity v2\u{0}".utf8)
        for (role, digest) in parts {
            stream += Array(role.utf8) + [0]
            if let digest { stream.append(1); digest.append(to: &stream) } else { stream.append(0) }
        }
        return "m3id2:\(ContentHash.digest(stream))"
    }

    /// The first-generation identity: FNV-1a 64 over config.json, both heads and
    /// sentencepiece.bpe.model whole, then the weights file's size and 64 evenly spaced
    /// 64 KiB blocks of it. Kept only to recognise indexes built before identity v2.
    func legacyIdentity() throws -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        for name in [File.config, File.colbertHead, File.sparseHead, File.sentencepiece] {
            let bytes = try ModelFiles.read(path(name), limit: ModelFiles.legacySmallFileLimit)
            bytes.withUnsafeBytes { mix($0) }
        }
        let weights = try MappedFile(path: weightsPath, adviseWillNeed: false)
        let size = UInt64(weights.bytes.count)
        withUnsafeBytes(of: size.littleEndian) { mix($0) }
        let block: UInt64 = 65536, samples: UInt64 = 64
        for i in 0..<samples {
            let offset = size > block ? (size - block) * i / (samples - 1) : 0
            if let slice = weights.bytes.slice(Int(offset), Int(min(block, size - offset))) { mix(slice) }
        }
        return String(format: "%016llx", h)
    }
}
