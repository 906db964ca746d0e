// The encoder's spinning thread pool (see CM3Parallel.h).
//
// One job at a time: `submit` is held by the thread whose tasks the pool runs. `state`
// packs the job's generation, a closed flag and how many workers joined it. A worker that
// sees a new generation joins by incrementing the count, unless the job is closed, then
// takes task indices from `next_index` until they run out and counts itself into
// `finished`. The submitter runs tasks too; when they run out it closes the job and waits
// only for the workers that joined: a worker the OS has not scheduled (another process
// busy on its core) costs nothing but its share of the tasks, which the submitter takes.
//
// A worker that sees no new job for SPIN_NS sleeps on `wake`. It re-checks the state under
// `sleep_lock`, and the submitter publishes the job before it takes `sleep_lock` to signal,
// so a wake-up is never lost. Spinning yields now and then, so other runnable threads get
// the core.
#include "CM3Parallel.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

enum { MAX_WORKERS = 63 };
#define SPIN_NS 500000ull
#define CLOSED (1ull << 32)
#define JOINED_MASK 0xFFFFFFFFull
#define GENERATION(s) ((s) >> 33)

static pthread_mutex_t submit = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int sleepers;            // guarded by sleep_lock
static size_t workers;          // under `submit`
static int started;             // under `submit`: whether the workers were started
static uint64_t generation;     // under `submit`: the last job's

static m3_task_fn job_task;     // the job, written by the submitter before `state`
static void *job_context;
static size_t job_count;
static uint64_t state;          // atomic: generation << 33 | CLOSED | joined workers
static size_t next_index;       // atomic
static size_t finished;         // atomic: joined workers done with the current job

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void run_tasks(void) {
    for (;;) {
        size_t i = __atomic_fetch_add(&next_index, 1, __ATOMIC_RELAXED);
        if (i >= job_count) return;
        job_task(job_context, i);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    uint64_t seen = 0;  // generations start at 1
    for (;;) {
        uint64_t s = __atomic_load_n(&state, __ATOMIC_ACQUIRE), start = now_ns();
        unsigned spins = 0;
        while (GENERATION(s) == seen) {
            cpu_relax();
            if ((++spins & 255) == 0) {
                sched_yield();
                if (now_ns() - start > SPIN_NS) {
                    pthread_mutex_lock(&sleep_lock);
                    sleepers++;
                    while (GENERATION(s = __atomic_load_n(&state, __ATOMIC_ACQUIRE)) == seen) pthread_cond_wait(&wake, &sleep_lock);
                    sleepers--;
                    pthread_mutex_unlock(&sleep_lock);
                    break;
                }
            }
            s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
        }
        seen = GENERATION(s);
        // Join unless the job closed (or a newer one replaced it) meanwhile.
        int joined = 0;
        while (GENERATION(s) == seen && !(s & CLOSED)) {
            if (__atomic_compare_exchange_n(&state, &s, s + 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) { joined = 1; break; }
        }
        if (!joined) continue;
        run_tasks();
        __atomic_fetch_add(&finished, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

// Under `submit`: starts one worker per further online core, once.
static void start_workers(void) {
    if (started) return;
    started = 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cores > 1 ? (size_t)(cores - 1) : 0;
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (size_t i = 0; i < want; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker_main, NULL) != 0) break;  // fewer workers, still correct
        workers++;
    }
    pthread_attr_destroy(&attr);
}

void m3_parallel_for(size_t count, m3_task_fn task, void *context) {
    if (count == 0) return;
    if (count == 1 || pthread_mutex_trylock(&submit) != 0) {
        for (size_t i = 0; i < count; i++) task(context, i);
        return;
    }
    start_workers();
    if (workers == 0) {
        pthread_mutex_unlock(&submit);
        for (size_t i = 0; i < count; i++) task(context, i);
        return;
    }
    job_task = task;
    job_context = context;
    job_count = count;
    __atomic_store_n(&next_index, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&finished, 0, __ATOMIC_RELAXED);
    generation++;
    __atomic_store_n(&state, generation << 33, __ATOMIC_RELEASE);
    pthread_mutex_lock(&sleep_lock);
    if (sleepers > 0) pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&sleep_lock);
    run_tasks();
    // Close the job: workers that have not joined by now never will.
    uint64_t closed = __atomic_fetch_or(&state, CLOSED, __ATOMIC_ACQ_REL);
    size_t joined = (size_t)(closed & JOINED_MASK);
    unsigned spins = 0;
    while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < joined) {
        cpu_relax();
        if ((++spins & 255) == 0) sched_yield();  // a joined worker lost its core mid-task
    }
    pthread_mutex_unlock(&submit);
}

size_t m3_parallel_workers(void) {
    pthread_mutex_lock(&submit);
    size_t n = workers;
    pthread_mutex_unlock(&submit);
    return n;
}
