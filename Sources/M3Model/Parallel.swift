import CM3Kernels

/// Runs body(i) for every i in 0 ..< count on the calling thread and CM3Kernels' spinning
/// pool (CM3Parallel.h), indices taken in turn; returns when all have run. For the forward
/// pass's ~100 short steps: the pool's workers are already running when a step starts,
/// where DispatchQueue.concurrentPerform wakes a parked thread each time. `body` must give
/// the same result whichever thread runs an index (each writes its own outputs).
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    guard count > 1 else {
        if count == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { body in
        // The closure only lives for this call, which returns after every task has run.
        var task = body
        withUnsafeMutablePointer(to: &task) { pointer in
            m3_parallel_for(count, { context, index in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(index))
            }, pointer)
        }
    }
}
