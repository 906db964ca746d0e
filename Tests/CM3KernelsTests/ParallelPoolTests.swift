import CM3Kernels
import Foundation
import XCTest

/// The encoder's spinning pool (m3_parallel_for): every index runs exactly once, whatever the
/// count, however many threads submit at once (one gets the pool, the others run their own
/// tasks), when a task submits again (it runs inline), and after the workers fell asleep.
final class ParallelPoolTests: XCTestCase {
    /// Per-index run counts, bumped atomically by whichever thread runs the index.
    final class Counts: @unchecked Sendable {
        let slots: UnsafeMutablePointer<Int64>
        let count: Int
        init(_ count: Int) {
            self.count = count
            slots = .allocate(capacity: max(count, 1))
            slots.initialize(repeating: 0, count: max(count, 1))
        }
        deinit { slots.deallocate() }
        var all: [Int64] { Array(UnsafeBufferPointer(start: slots, count: count)) }
    }

    /// Runs `count` tasks that each add 1 to their slot (and, when `nested`, submit 3 more
    /// that add 10 to the same slot), through the C entry point directly.
    static func run(_ counts: Counts, nested: Bool) {
        struct Context { let counts: Counts; let nested: Bool }
        var context = Context(counts: counts, nested: nested)
        withUnsafeMutablePointer(to: &context) { p in
            m3_parallel_for(counts.count, { raw, i in
                let c = raw!.assumingMemoryBound(to: Context.self)
                m3ix_fetch_add(c.pointee.counts.slots + Int(i), 1)
                if c.pointee.nested {
                    var inner = (c.pointee.counts.slots + Int(i))
                    withUnsafeMutablePointer(to: &inner) { q in
                        m3_parallel_for(3, { raw2, _ in
                            m3ix_fetch_add(raw2!.assumingMemoryBound(to: UnsafeMutablePointer<Int64>.self).pointee, 10)
                        }, q)
                    }
                }
            }, p)
        }
    }

    func testEveryIndexRunsOnce() {
        for count in [0, 1, 2, 3, 7, 64, 1000] {
            for _ in 0..<20 {
                let counts = Counts(count)
                Self.run(counts, nested: false)
                XCTAssertEqual(counts.all, [Int64](repeating: 1, count: count), "count \(count)")
            }
        }
        XCTAssertEqual(m3_parallel_workers(), max(ProcessInfo.processInfo.activeProcessorCount - 1, 0))
    }

    func testNestedSubmissionRunsInline() {
        let counts = Counts(50)
        Self.run(counts, nested: true)
        XCTAssertEqual(counts.all, [Int64](repeating: 31, count: 50))
    }

    func testConcurrentSubmittersEachGetTheirTasksRun() {
        let results = Counts(8)  // 1 per submitter whose tasks all ran exactly once
        DispatchQueue.concurrentPerform(iterations: 8) { s in
            for round in 0..<30 {
                let counts = Counts(17 + s + round)
                Self.run(counts, nested: s % 2 == 1)
                let want = Int64(s % 2 == 1 ? 31 : 1)
                if counts.all.allSatisfy({ $0 == want }) && round == 29 { m3ix_fetch_add(results.slots + s, 1) }
                if !counts.all.allSatisfy({ $0 == want }) { return }
            }
        }
        XCTAssertEqual(results.all, [Int64](repeating: 1, count: 8))
    }

    func testJobsAfterTheWorkersSleep() {
        for _ in 0..<3 {
            Thread.sleep(forTimeInterval: 0.005)  // past the workers' 0.5 ms of spinning
            let counts = Counts(100)
            Self.run(counts, nested: false)
            XCTAssertEqual(counts.all, [Int64](repeating: 1, count: 100))
        }
    }
}
