/* bench/bench.h: what the benchmarks share: a monotonic clock (or a thread's CPU time), the median
 * of timings, and the machine's FMA ceiling (the most GFLOP/s its vector FMA
 * units give), which bench/gemm and bench/conv measure their products
 * against. Static functions: each program includes it once. */
#ifndef TAPEGRAD_BENCH_H
#define TAPEGRAD_BENCH_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The clock the timings use: wall time, or with --cpu-time this thread's
 * CPU time (fair on one thread only, as it does not see the other
 * threads' work). */
static bool cpu_time;
static double tick(void) {
  if (!cpu_time) return now();
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* The FMA ceiling: twelve independent chains of vector FMAs, enough to keep
 * every FMA unit busy whatever its latency. Returns FLOPs done. */
#define FMA_LOOP(TARGET, NAME, V, SET1, FMA, ADD, LANES)                   \
  TARGET static double NAME(long iters, float *sink) {                   \
    V a0 = SET1(1.0f), a1 = SET1(1.1f), a2 = SET1(1.2f), a3 = SET1(1.3f),  \
      a4 = SET1(1.4f), a5 = SET1(1.5f), a6 = SET1(1.6f), a7 = SET1(1.7f),  \
      a8 = SET1(1.8f), a9 = SET1(1.9f), a10 = SET1(2.0f), a11 = SET1(2.1f); \
    V m = SET1(0.999999f), c = SET1(1e-7f);                                \
    for (long i = 0; i < iters; i++) {                                     \
      a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c);          \
      a3 = FMA(a3, m, c), a4 = FMA(a4, m, c), a5 = FMA(a5, m, c);          \
      a6 = FMA(a6, m, c), a7 = FMA(a7, m, c), a8 = FMA(a8, m, c);          \
      a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c);      \
      __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));       \
    }                                                                      \
    V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))); \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                           \
    float out[16];                                                         \
    memcpy(out, &s, sizeof s);                                             \
    *sink += out[0];                                                       \
    return 12.0 * 2.0 * LANES * (double)iters;                             \
  }
FMA_LOOP(__attribute__((target("avx2,fma"))), fma_avx2, __m256,
         _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8)
FMA_LOOP(__attribute__((target("avx512f"))), fma_avx512, __m512,
         _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16)

/* Median GFLOP/s of the FMA loop on each of threads threads at once (the
 * sum over threads), on the widest vectors the CPU has; 0 and no name on
 * a CPU with neither. */
static double fma_ceiling(int threads, int reps, const char **isa) {
  double (*loop)(long, float *) = NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    loop = fma_avx512, *isa = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    loop = fma_avx2, *isa = "avx2+fma";
  if (!loop) return 0;
  double r[64];
  if (reps > 64) reps = 64;
  const long iters = 20000000;
  for (int i = 0; i < reps; i++) {
    double t0 = now(), flop = 0;
    float sink = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flop, sink)
#endif
    flop += loop(iters, &sink);
    r[i] = flop / (now() - t0) * 1e-9;
    if (sink == 12345.0f) r[i] += 0; /* keeps the result alive */
  }
  qsort(r, (size_t)reps, sizeof *r, cmp_double);
  return r[reps / 2];
}
#else
static double fma_ceiling(int threads, int reps, const char **isa) {
  (void)threads, (void)reps, (void)isa;
  return 0;
}
#endif

#endif
