import Foundation
import M3Index
import M3Store

/// The one error M3Search's API throws: what kind of problem it is, a message in the
/// library's terms (what happened, and what to do), and the lower layer's error that caused
/// it. Apps switch on `kind`; the message is for people.
///
/// ```swift
/// do {
///     let report = try index.search("lighthouse keepers")
/// } catch let error as M3SearchError where error.kind == .emptyIndex {
///     print("nothing indexed yet")
/// } catch let error as M3SearchError {
///     print(error)                          // the message
///     if case StoreError.locked(_, let holder)? = error.underlying { print(holder as Any) }
/// }
/// ```
///
/// The lower layers' error types (`StoreError`, `ModelError`, `TokenizerError`,
/// `IndexError`, `EvaluationError`) are re-exported by M3Search, so `underlying` can be
/// matched without importing anything else. `M3SearchError(error)` classifies any of them,
/// which is how the command line maps every failure to one exit code.
public struct M3SearchError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        /// A query, option, weight or document given to the API is not acceptable.
        case invalidArgument
        /// A file given to the API (queries, judgments, an export) is malformed, or the index
        /// holds a value an engine export cannot (a text longer than the engine's limit).
        case invalidInput
        /// The index, the model (or one of its files) or an input file does not exist.
        case notFound
        /// The model's files are damaged or describe a model m3search does not run.
        case invalidModel
        /// The file is not an m3search index.
        case notAnIndex
        /// The index was built with another model or other settings than asked for.
        case incompatible
        /// The index was written by a newer m3search.
        case newerFormat
        /// Stored bytes fail validation: the index is damaged.
        case corrupt
        /// The index holds no documents yet.
        case emptyIndex
        /// Another process is writing the index; try again when it is done.
        case locked
        /// Writing needs permissions that are missing (a read-only index or folder).
        case readOnly
        /// The disk is full; nothing of the failed write was kept.
        case diskFull
        /// Reading or writing a file failed otherwise.
        case io
        /// Anything else: a bug in m3search or its dependencies.
        case other

        public var description: String { rawValue }
    }

    public var kind: Kind
    /// What happened and what to do, in the library's terms (no command-line flags).
    public var message: String
    /// The error of the layer below that caused this one, if any.
    public var underlying: (any Error)?

    public init(_ kind: Kind, _ message: String, underlying: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }

    /// Classifies any error: an `M3SearchError` stays itself; the lower layers' errors keep
    /// their message and become its `underlying` cause.
    public init(_ error: any Error) {
        switch error {
        case let e as M3SearchError: self = e
        case let e as StoreError: self.init(Self.kind(of: e), e.description, underlying: e)
        case let e as IndexError:
            switch e {
            case .corrupt, .integrityViolation: self.init(.corrupt, e.description, underlying: e)
            case .capacityExceeded: self.init(.other, e.description, underlying: e)
            default: self.init(.invalidArgument, e.description, underlying: e)
            }
        case let e as ModelError:
            switch e {
            case .modelNotFound, .missingFile: self.init(.notFound, e.description, underlying: e)
            case .invalidInput: self.init(.invalidArgument, e.description, underlying: e)
            default: self.init(.invalidModel, e.description, underlying: e)
            }
        case let e as TokenizerError: self.init(.invalidModel, e.description, underlying: e)
        case let e as EvaluationError:
            switch e {
            case .unreadable: self.init(.notFound, e.description, underlying: e)
            case .invalidMetric, .invalidGrid: self.init(.invalidArgument, e.description, underlying: e)
            default: self.init(.invalidInput, e.description, underlying: e)
            }
        case let e as IndexSettings.Mismatch: self.init(.incompatible, e.description, underlying: e)
        case let e as ExportError: self.init(Self.kind(of: e), e.description, underlying: e)
        case let e as CocoaError:
            let kind: Kind
            switch e.code {
            case .fileNoSuchFile, .fileReadNoSuchFile: kind = .notFound
            case .fileReadNoPermission, .fileWriteNoPermission, .fileWriteVolumeReadOnly: kind = .readOnly
            case .fileWriteOutOfSpace: kind = .diskFull
            case .coderReadCorrupt, .coderValueNotFound, .coderInvalidValue, .propertyListReadCorrupt: kind = .invalidArgument
            default: kind = .io
            }
            self.init(kind, e.localizedDescription, underlying: e)
        case let e as POSIXError:
            let kind: Kind
            switch e.code {
            case .ENOENT, .ENOTDIR: kind = .notFound
            case .EACCES, .EPERM, .EROFS: kind = .readOnly
            case .ENOSPC, .EDQUOT: kind = .diskFull
            default: kind = .io
            }
            self.init(kind, "\(e.localizedDescription) (\(e.code.rawValue))", underlying: e)
        case is EncodingError, is DecodingError:
            self.init(.invalidArgument, "\(error)", underlying: error)
        default:
            self.init(.other, "\(error)", underlying: error)
        }
    }

    private static func kind(of e: StoreError) -> Kind {
        switch e {
        case .notAnIndex: return .notAnIndex
        case .newerFormat: return .newerFormat
        case .incompatible: return .incompatible
        case .missing: return .notFound
        case .locked: return .locked
        case .lockUnavailable, .readOnly: return .readOnly
        case .corrupt: return .corrupt
        case .diskFull: return .diskFull
        case .sqlite(_, let code, _, _):
            // SQLite's primary result codes (sqlite3.h).
            switch code {
            case 5, 6: return .locked          // SQLITE_BUSY, SQLITE_LOCKED
            case 8, 3, 23: return .readOnly    // SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH
            case 1: return .corrupt            // SQLITE_ERROR: the file's schema is not the one m3search wrote
            default: return .io
            }
        }
    }

    private static func kind(of e: ExportError) -> Kind {
        switch e {
        case .notAFolder, .folderNotEmpty, .earlierExport: return .invalidArgument
        case .missingParent: return .notFound
        case .nonFinite: return .corrupt
        case .tooLong: return .invalidInput
        case .io(_, _, let code):
            switch code {
            case ENOSPC, EDQUOT: return .diskFull
            case EACCES, EPERM, EROFS: return .readOnly
            case ENOENT, ENOTDIR: return .notFound
            default: return .io
            }
        }
    }

    /// Runs `body`, turning whatever it throws into an `M3SearchError`: the boundary of
    /// every public call.
    static func boundary<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw M3SearchError(error) }
    }
}

extension M3SearchError {
    static func invalidArgument(_ message: String) -> M3SearchError { M3SearchError(.invalidArgument, message) }

    static func emptyIndex(_ path: String) -> M3SearchError { M3SearchError(.emptyIndex, "The index \(path) holds no documents yet.") }
}
