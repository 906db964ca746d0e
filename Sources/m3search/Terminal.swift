import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import M3Search

// What the command line does differently on a terminal: colour (with NO_COLOR and
// --color) and the progress bar of `index`, sized to the terminal and redrawn in place.

/// `--color auto|always|never`.
enum ColorChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, always, never
}

/// `--color`: whether to style output with ANSI escapes.
struct ColorOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Bold query terms in snippets; auto: when stdout is a terminal and NO_COLOR is unset or empty.",
        valueName: "when"))
    var color: ColorChoice = .auto

    /// Whether output on `descriptor` gets escapes. `always` and `never` win over NO_COLOR
    /// (https://no-color.org: a flag given on the command line overrides the variable).
    func enabled(on descriptor: Int32) -> Bool {
        switch color {
        case .always: return true
        case .never: return false
        case .auto: return isatty(descriptor) == 1 && !noColorRequested
        }
    }
}

/// NO_COLOR set to anything but the empty string.
var noColorRequested: Bool {
    !(ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty
}

/// The width of the terminal on `descriptor` (TIOCGWINSZ), else $COLUMNS, else 80.
func terminalColumns(_ descriptor: Int32) -> Int {
    var size = winsize()
    if ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
    if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap({ Int($0) }), columns > 0 {
        return min(columns, 1000)
    }
    return 80
}

/// The progress line of `index` on stderr: one line that fits the terminal, redrawn in
/// place (carriage return, clear line) after each file. Nil when stderr is not a terminal:
/// logs and pipes get the summary alone.
struct ProgressBar {
    private let descriptor: Int32 = 2
    private var drawn = false

    init?() {
        guard isatty(descriptor) == 1 else { return nil }
    }

    /// The text for `columns` columns: the bar shrinks first, then the least useful fields
    /// go, so the line never reaches the last column (where a terminal would wrap).
    static func line(_ p: IndexProgress, columns: Int) -> String {
        let room = max(columns - 1, 1)
        let rate = p.elapsed > 0 ? Double(p.tokens) / p.elapsed : 0
        let eta = p.filesDone > 0 ? p.elapsed / Double(p.filesDone) * Double(p.filesTotal - p.filesDone) : 0
        let count = "\(p.filesDone)/\(p.filesTotal) files"
        let fields = [count, "\(p.chunks) chunks", String(format: "%.0f tok/s", rate), String(format: "ETA %.0fs", eta)]
        // Drop fields from the end of this order of importance until a bar of 8 fits.
        let kept: [[String]] = [fields, [fields[0], fields[1], fields[3]], [fields[0], fields[3]], [fields[0]]]
        for tail in kept {
            let text = "  " + tail.joined(separator: "  ")
            let width = min(40, room - text.count - 2)
            if width >= 8 {
                let filled = p.filesTotal > 0 ? width * p.filesDone / p.filesTotal : width
                return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]" + text
            }
        }
        return String(count.prefix(room))
    }

    mutating func draw(_ p: IndexProgress) {
        let text = "\r\u{1B}[2K" + Self.line(p, columns: terminalColumns(descriptor))
        FileHandle.standardError.write(Data(text.utf8))
        drawn = true
    }

    /// Ends the bar's line, so what follows starts on its own.
    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
