// PQ encoding cost: m3cx_nearest_centroid at each ISA level over pq4 rows at 1024-d (256
// subspaces of 4 values, 256 centroids each), CPU time per row; the sum of the chosen
// indices must agree between levels. Build from the repository root:
//   K=Sources/CM3Kernels; clang -O2 -I$K/include -I$K $K/compressed_kernels.c $K/index_kernels.c \
//       Benchmarks/pq_encode.c -o /tmp/pq_encode -lm && /tmp/pq_encode
#include "CM3CompressedKernels.h"
#include "CM3IndexKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  size_t ds=4,k=256,m=256,rows=2000; // pq4 at 1024-d: 256 subspaces of 4 values
  float *ct=malloc(sizeof(float)*m*ds*k),*cn=malloc(sizeof(float)*m*k),*x=malloc(sizeof(float)*rows*m*ds);
  srand(1); for(size_t i=0;i<m*ds*k;i++) ct[i]=rand()/(float)RAND_MAX-0.5f;
  for(size_t s=0;s<m;s++)for(size_t c=0;c<k;c++){float n=0;for(size_t t=0;t<ds;t++){float v=ct[s*ds*k+t*k+c];n+=v*v;}cn[s*k+c]=n;}
  for(size_t i=0;i<rows*m*ds;i++) x[i]=rand()/(float)RAND_MAX-0.5f;
  for(int rep=0;rep<3;rep++) for(int isa=0;isa<=2;isa+=2){
    double t=now(); unsigned long sum=0;
    for(size_t r=0;r<rows;r++) for(size_t s=0;s<m;s++) sum+=m3cx_nearest_centroid_isa(isa,x+r*m*ds+s*ds,ds,ct+s*ds*k,cn+s*k,k);
    double dt=now()-t; printf("isa %d: %.3f ms per 1024-d row (sum %lu)\n",isa,dt*1e3/rows,sum);
  }
}
