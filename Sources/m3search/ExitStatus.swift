import ArgumentParser
import Foundation
import M3Search

/// How the command line ends on an error: one table from the library's error kinds to exit
/// codes (BSD sysexits.h values, as ArgumentParser uses 64 for usage errors), and the
/// command-line hint (flag names) added to the library's message. Documented in the README
/// ("Exit codes").
enum ExitStatus {
    /// `check` found problems in an index (not an error of the command itself).
    static let problemsFound: Int32 = 3

    /// The exit code of each kind of error.
    static func code(for kind: M3SearchError.Kind) -> Int32 {
        switch kind {
        case .invalidArgument: return 64                                      // EX_USAGE
        case .invalidInput, .invalidModel, .notAnIndex, .incompatible,
             .newerFormat, .corrupt: return 65                                // EX_DATAERR
        case .notFound, .emptyIndex: return 66                                // EX_NOINPUT
        case .other: return 70                                                // EX_SOFTWARE
        case .io, .diskFull: return 74                                        // EX_IOERR
        case .locked: return 75                                               // EX_TEMPFAIL
        case .readOnly: return 77                                             // EX_NOPERM
        }
    }

    /// The message printed for an error: the library's, with the command line's names for
    /// what to do next.
    static func message(for error: M3SearchError) -> String {
        switch error.underlying {
        case StoreError.missing(let path)?:
            return "no index at \(path). Build one with `m3search index <folders> --index \(path)`."
        case StoreError.notAnIndex?:
            return error.message + " Choose another --index path."
        case StoreError.incompatible?:
            return error.message + " Use a new --index path, or re-index with the settings it was built with."
        case StoreError.locked?:
            return error.message + " Pass --wait to wait for it."
        case let mismatch as IndexSettings.Mismatch:
            let flag = flag(for: mismatch.setting)
            return "\(mismatch.path) was built with different settings: it was created with \(flag) \(mismatch.recorded), "
                + "not \(mismatch.requested); this setting is fixed when an index is created: omit \(flag) to use this index, "
                + "or build a new one with another --index path."
        case ExportError.earlierExport(let path)?:
            return "\(path) holds an earlier export: pass --force to replace it, or choose another --out folder (nothing was written)."
        case ExportError.notAFolder(let path, let kind)?:
            return "--out \(path) is \(kind), not a folder: give a new or empty folder (nothing was written)."
        case ExportError.folderNotEmpty(let path)?:
            return "--out \(path) is not empty and holds no earlier m3search export: give a new or empty folder (nothing was written)."
        case ModelError.modelNotFound(let searched)?:
            return "No BGE-M3 model found (looked in: \((["--model"] + searched).joined(separator: ", "))). "
                + "Download it with `huggingface-cli download BAAI/bge-m3` (or `git clone https://huggingface.co/BAAI/bge-m3`) "
                + "and pass --model DIR or set M3SEARCH_MODEL=DIR."
        default:
            break
        }
        switch error.kind {
        case .emptyIndex: return error.message + " Add some with `m3search index <folders> --index <path>`."
        case .corrupt: return error.message + " (`m3search index` into a new --index path rebuilds it.)"
        default: return error.message
        }
    }

    static func flag(for setting: IndexSettings.Mismatch.Setting) -> String {
        switch setting {
        case .colbertStorage: return "--colbert-storage"
        case .denseStorage: return "--dense-storage"
        case .colbertPruning: return "--colbert-prune"
        case .pooling: return "--pooling"
        case .normalize: return "--no-normalize"
        case .queryPrefix: return "--query-prefix"
        case .passagePrefix: return "--passage-prefix"
        }
    }

    /// Prints the error as one line on stderr and exits with its code. ArgumentParser's own
    /// errors (usage, `--help` and `--version` requests, `ExitCode`) are left to
    /// ArgumentParser, which prints help or usage and exits 0 or 64.
    static func exit(with error: any Error, command: ParsableCommand.Type) -> Never {
        if error is ValidationError || error is CleanExit || error is ExitCode
            || String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            command.exit(withError: error)
        }
        let e = M3SearchError(error)
        FileHandle.standardError.write(Data(("m3search: " + message(for: e) + "\n").utf8))
        Foundation.exit(code(for: e.kind))
    }
}
