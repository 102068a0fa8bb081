/* src/kernels/kernels.h: the kernels' interface: GEMM, the sparse-input
 * products, the thread door and the CPU probe. Pointers, sizes and strides
 * in; no tape and no tensor here. */
#ifndef TAPEGRAD_KERNELS_H
#define TAPEGRAD_KERNELS_H

#include "../base/base.h"

/* cpu.c: the one probe of the CPU's features, for every kernel. */
enum {
  TG__CPU_AVX2_FMA = 1u,
  TG__CPU_AVX512F = 2u,
  TG__CPU_BMI2_POPCNT = 4u,
};
unsigned tg__cpu_features(void);

/* cpu.c: the vector instruction sets the elementwise loops (ops/unary.h,
 * the broadcasting binary ops) are compiled for a second and third time,
 * picked once at run time. Every path computes each element with the same
 * IEEE operations in the same order (no FMA contraction: the build passes
 * -ffp-contract=off, as FMA's single rounding would change results), so
 * results never depend on the machine; only the speed does. */
enum { TG__SIMD_GENERIC, TG__SIMD_AVX2, TG__SIMD_AVX512, TG__SIMD_NPATHS };
bool tg__simd_supported(int p);
const char *tg__simd_name(int p); /* generic, avx2, avx512 */
/* The path in use: the best the CPU supports, or the one the environment
 * variable TG_SIMD names. When TG_SIMD names no path or one this CPU
 * cannot run, tg__simd_check records a message naming fn and returns
 * TG_EINVAL (the elementwise ops refuse to run), and tg__simd_path gives
 * generic. */
int tg__simd_path(void);
int tg__simd_check(const char *fn);
/* Forces path p (p < 0: back to TG_SIMD or the default); TG_EINVAL when
 * this CPU cannot run it. For the tests and benchmarks. */
int tg__simd_set_path(int p);
/* TG__SIMD_EACH(DEF, ...) expands DEF(isa, ...) for each path this build
 * has (generic alone off x86-64); TG__TARGET_##isa is the attribute that
 * compiles a function for it, TG__SIMD_TABLE(fn) a table of fn_##isa by
 * path, generic where a path is not built. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TG__SIMD_X86 1
#define TG__TARGET_generic
#define TG__TARGET_avx2 __attribute__((target("avx2")))
#define TG__TARGET_avx512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#define TG__SIMD_EACH(DEF, ...) \
  DEF(generic, __VA_ARGS__) DEF(avx2, __VA_ARGS__) DEF(avx512, __VA_ARGS__)
#define TG__SIMD_TABLE(fn) {fn##_generic, fn##_avx2, fn##_avx512}
#else
#define TG__SIMD_X86 0
#define TG__TARGET_generic
#define TG__SIMD_EACH(DEF, ...) DEF(generic, __VA_ARGS__)
#define TG__SIMD_TABLE(fn) {fn##_generic, fn##_generic, fn##_generic}
#endif

/* gemm.c: C[M,N] = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or
 * X^T. Leading dimensions are those of the stored matrices. */
void tg__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb,
               float beta, float *C, int64_t ldc);
void tg__dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
               double alpha, const double *A, int64_t lda, const double *B,
               int64_t ldb, double beta, double *C, int64_t ldc);
/* The same with C read as bias[N] in every row (bias NULL: as above):
 * C = alpha * op(A) op(B) + beta * bias[j], bit for bit what filling C's
 * rows with the bias and calling the above gives, without that pass over
 * C. */
void tg__sgemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, const float *bias, float *C,
                    int64_t ldc);
void tg__dgemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    double alpha, const double *A, int64_t lda,
                    const double *B, int64_t ldb, double beta,
                    const double *bias, double *C, int64_t ldc);
/* The same product with op(A) never stored: pack_a(ctx, i0, mb, k0, kb,
 * mr, ap) writes op(A)'s rows [i0, i0+mb) by columns [k0, k0+kb) into ap
 * (float or double, as the product) in MR-row panels, ap[(i/mr)*kb*mr +
 * k*mr + i%mr] for i and k counted from i0 and k0, the rows of the last
 * panel past mb set to zero (mr is the kernel's MR, at most 16). It is
 * called from the product's threads at once, for disjoint blocks. An
 * implicit im2col, say, packs straight from an image. Always the built-in
 * product, never a CBLAS; and never as C^T, which tg__sgemm computes
 * instead where C is narrower than a tile (the same sums over k in the
 * same order). */
typedef void (*tg__gemm_pack_a_fn)(void *ctx, int64_t i0, int64_t mb,
                                   int64_t k0, int64_t kb, int mr, void *ap);
void tg__sgemm_pack_a(tg__gemm_pack_a_fn pack_a, void *ctx, bool tb,
                      int64_t M, int64_t N, int64_t K, float alpha,
                      const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc);
void tg__dgemm_pack_a(tg__gemm_pack_a_fn pack_a, void *ctx, bool tb,
                      int64_t M, int64_t N, int64_t K, double alpha,
                      const double *B, int64_t ldb, double beta, double *C,
                      int64_t ldc);
/* The threads over which to split count independent products of one size
 * [M,N,K], each computed wholly by one thread: 1 when such a product is
 * large enough to thread itself (or goes to the CBLAS), or when all of
 * them together are too little work for a parallel region. A product run
 * inside the region computes on its thread alone (tg__par_threads is 1
 * there), with the same bits as outside it. */
int tg__gemm_batch_threads(int64_t M, int64_t N, int64_t K, int64_t count);
/* The micro-kernels gemm.c can run. By default it takes the best the CPU
 * supports, or the one named by the environment variable TG_GEMM_KERNEL
 * (generic, avx2, avx512, avx512-on-avx2) when the CPU supports that one.
 * avx512-on-avx2 is the AVX-512 kernel's code and tile on AVX2 vectors, so
 * that path is tested on machines without AVX-512; never the default. */
enum {
  TG__GEMM_GENERIC,
  TG__GEMM_AVX2,
  TG__GEMM_AVX512,
  TG__GEMM_AVX512_ON_AVX2,
  TG__GEMM_NKERNELS
};
bool tg__gemm_kernel_supported(int k);
const char *tg__gemm_kernel_name(int k);
int tg__gemm_kernel(void); /* the one in use */
/* Forces kernel k for every thread (k < 0: back to the default); TG_EINVAL
 * when this CPU cannot run it. */
int tg__gemm_set_kernel(int k);
/* Frees the calling thread's packing buffers (they are otherwise kept for
 * the next call, and freed when the thread ends). tg_tape_free calls it, so
 * once every tapegrad object is freed the calling thread holds nothing. */
void tg__gemm_release(void);

/* spmm.c: products with a float left operand A[M,K] that is mostly zeros,
 * kept by rows (CSR: rowptr[M+1], colidx/val[nnz]) and, for the weight
 * gradient, by columns (colptr[K+1], rowidx/cval[nnz]). */
typedef struct {
  int64_t m, k, nnz;
  int32_t *rowptr, *colidx, *colptr, *rowidx;
  float *val, *cval;
} tg__sparse;
/* False when the environment variable TG_SPARSE_INPUT is "0". */
bool tg__spmm_enabled(void);
/* A's non-zeros, or -1 as soon as there are too many for the sparse
 * product to pay. */
int64_t tg__spmm_nnz(const float *A, int64_t M, int64_t K);
/* The most non-zeros tg__spmm_nnz accepts for an [M,K] operand. */
int64_t tg__spmm_max_nnz(int64_t M, int64_t K);
/* Fills s (arrays allocated by the caller for nnz + TG__SPMM_SLACK
 * entries, as the build may write that far past its last; the by-column
 * ones only when by_col). */
#define TG__SPMM_SLACK 8
void tg__spmm_build(tg__sparse *s, const float *A, int64_t M, int64_t K,
                    bool by_col);
/* C[M,N] = A B (+ bias[N] on every row when bias is not NULL; B row-major
 * [K,N]); D[K,N] += A^T G (G [M,N]). */
void tg__spmm_f32(const tg__sparse *s, const float *B, const float *bias,
                  int64_t N, float *C);
void tg__spmm_tn_f32(const tg__sparse *s, const float *G, int64_t N, float *D);
/* threads.c: fn(ctx, i0, i1) over [0, n) in contiguous chunks, one per
 * thread, with at least min_chunk elements each (so small n stays on the
 * calling thread); for elementwise work, whose result cannot depend on the
 * split. */
typedef void (*tg__range_fn)(void *ctx, int64_t i0, int64_t i1);
void tg__par_range(int64_t n, int64_t min_chunk, tg__range_fn fn, void *ctx);
/* Every parallel region goes through these two: tg__par_threads(want) is
 * the number of threads to run (1 when OpenMP is absent, inside a parallel
 * region, or while the guard below has regions run on one thread), and
 * tg__par_run(nt, fn, ctx) calls fn(ctx, t, nt) on each thread t (just
 * fn(ctx, 0, 1) for nt < 2), timing the region for the guard. */
typedef void (*tg__par_fn)(void *ctx, int t, int nt);
int tg__par_threads(int want);
void tg__par_run(int nt, tg__par_fn fn, void *ctx);
/* The guard's state and rule, apart so the tests can drive them: after
 * TG__GUARD_WINDOW regions, when the decayed sums of their CPU time fall
 * under TG__GUARD_GAIN times their wall time, the next `stretch` regions
 * run on one thread, and the stretch doubles (up to the maximum) until a
 * window pays again. */
typedef struct {
  double cpu, wall;
  int seen;
  int64_t skip, stretch;
} tg__guard;
#define TG__GUARD_WINDOW 8
#define TG__GUARD_DECAY 0.9
#define TG__GUARD_GAIN 1.1
#define TG__GUARD_MIN_STRETCH 64
#define TG__GUARD_MAX_STRETCH 4096
/* True (and one fewer to go) while regions are to run on one thread. */
bool tg__guard_serial(tg__guard *g);
void tg__guard_update(tg__guard *g, double cpu, double wall);
/* For the tests: with the guard off, every region that asks for threads
 * gets them. */
void tg__par_guard_enable(bool on);
/* Elements per thread from which a memory-bound elementwise pass over
 * parameters is worth splitting: W2's 784x512 and 512x512 weights, not
 * W1's 784x100 (whose pass takes less than a parallel region costs). */
#define TG__PAR_ELEMS ((int64_t)1 << 17)

#endif
