import Dispatch
import Foundation
import Synchronization

/// Ctrl-C as a request to stop. The first SIGINT raises a flag that a long loop checks
/// between units of work (`index` between documents), so the run commits what it finished,
/// prints its summary and exits 130; a second SIGINT exits 130 at once (what is committed
/// stays committed: SQLite's log makes a cut anywhere safe, as the kill campaign shows).
///
/// A dispatch source receives the signal (its default action is turned off), so the
/// handler runs as ordinary code on a queue and may write and exit.
final class Interrupt: @unchecked Sendable {
    private let raised = Atomic<Bool>(false)
    private let source: DispatchSourceSignal

    /// Installs the handler; it lasts for the process.
    init(_ whatHappensNext: String) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        // The handler holds the object for the process's life, which is how long it is needed.
        source.setEventHandler { [self] in
            if raised.exchange(true, ordering: .relaxed) { _exit(130) }
            FileHandle.standardError.write(Data("\n\(whatHappensNext) (Ctrl-C again to stop at once)\n".utf8))
        }
        source.resume()
    }

    var isRaised: Bool { raised.load(ordering: .relaxed) }
}
