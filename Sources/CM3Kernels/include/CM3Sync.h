// Tiny synchronisation helpers for M3Index's parallel graph construction: one-byte spin
// locks (one per HNSW node, as hnswlib keeps one mutex per node, but 1 byte instead of 40)
// and an atomic counter that hands out work. Header-only (static inline) so Swift calls
// them without a call into another object file.
#ifndef CM3SYNC_H
#define CM3SYNC_H

#include <sched.h>
#include <stdint.h>

/// Takes the lock at *l (0 free, 1 held). Critical sections are a few µs (copy or prune one
/// neighbour list), so spin with `pause`, and yield now and then in case the holder was
/// descheduled (the machine may have more threads than cores).
static inline void m3ix_spin_lock(uint8_t *l) {
    unsigned spins = 0;
    while (__atomic_exchange_n(l, (uint8_t)1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if (++spins % 1024 == 0) sched_yield();
        }
    }
}

static inline void m3ix_spin_unlock(uint8_t *l) { __atomic_store_n(l, (uint8_t)0, __ATOMIC_RELEASE); }

/// Returns *p and adds v to it, atomically.
static inline int64_t m3ix_fetch_add(int64_t *p, int64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

#endif
