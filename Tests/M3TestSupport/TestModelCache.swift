// Support shared by the test targets (a plain target: it needs nothing from XCTest).
import Foundation

/// The model cache of a test process: one temporary folder, never ~/.cache.
///
/// `install()` points `$M3SEARCH_CACHE_DIR` at it, so model loads that take the default
/// cache (`ModelCache.fromEnvironment()`) and every `m3search` a test spawns (a child
/// inherits the environment) cache there. One folder for the whole process, so the
/// tokenizer tables are built once per test run, not once per spawned command. It is
/// removed when the process exits. The test targets' `fixture` helpers call `install()`,
/// so any test that names a fixture model has it in place before the model loads.
public enum TestModelCache {
    /// Installs the folder (the first call creates it) and returns its path.
    @discardableResult
    public static func install() -> String { directory }

    private static let directory: String = {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("m3-test-cache-\(getpid())-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        // Overrides any value from the shell too: a test run must not write into a
        // cache the user keeps.
        setenv("M3SEARCH_CACHE_DIR", url.path, 1)
        atexit { TestModelCache.remove() }
        return url.path
    }()

    private static func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
