#include <cblas.h>

/* Exported by OpenBLAS's pthreads and OpenMP servers (not in cblas.h): stops the worker
   threads it started when it loaded. */
int blas_thread_shutdown_(void);
