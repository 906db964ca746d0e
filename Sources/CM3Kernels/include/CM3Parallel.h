// A thread pool for the encoder's parallel steps. A forward pass runs about a hundred of
// them (linear layers, conversions, norms), each 0.05–1 ms on a short query; the pool's
// workers spin between steps instead of parking, so every step starts on all cores at once.
// (DispatchQueue.concurrentPerform wakes a parked worker for each step; on the 2-core VM
// measured, that left one core idle for ~10 ms of a 30 ms 16-token int8 pass.)
#ifndef CM3PARALLEL_H
#define CM3PARALLEL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*m3_task_fn)(void *context, size_t index);

/// Runs task(context, i) for every i in 0 ..< count on the calling thread and the pool's
/// workers (one per further online core, started at the first call), which take indices in
/// order from a shared counter; returns when every task has run. Tasks must not depend on
/// which thread runs them. While the pool serves another caller (or a task calls this
/// again), the calling thread runs all its tasks itself. Workers spin ~0.5 ms after a step
/// before they sleep.
void m3_parallel_for(size_t count, m3_task_fn task, void *context);

/// Workers the pool runs beside the calling thread (0 on one core, or before the first call).
size_t m3_parallel_workers(void);

#ifdef __cplusplus
}
#endif

#endif
