/* src/kernels/gemm.c: the built-in matrix product for both float types, packed and
 * cache-blocked (see gemm_drv.h), with AVX-512 and AVX2+FMA micro-kernels
 * (gemm_kern.h) chosen at run time and a portable C one for every other
 * machine. The default build needs no -march flag: only the kernels
 * themselves are compiled for their instruction sets. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#ifdef TG_USE_CBLAS
#include <cblas.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TG_GEMM_X86 1
#include <immintrin.h>
#else
#define TG_GEMM_X86 0
#endif

/* ---- packing buffers: one per thread, made at the first product large
 * enough for any block (so a steady state never reallocates; pages never
 * touched cost no memory), freed when the thread ends or by
 * tg__gemm_release. The start of the allocation is kept beside the aligned
 * pointer, so a leak checker sees the buffers of threads still alive at
 * exit as reachable; and the free function of the allocator that made it,
 * in case the user installs another one meanwhile. */
typedef struct {
  void *raw;
  void *p;
  size_t cap;
  tg_free_fn free_fn;
} gemm_tbuf;

static _Thread_local gemm_tbuf tl_buf;
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static bool buf_key_ok;

static void buf_free(gemm_tbuf *b) {
  if (b->raw) b->free_fn(b->raw);
  b->raw = b->p = NULL;
  b->cap = 0;
}

static size_t buf_full_bytes(void);

static void buf_at_exit(void *arg) { buf_free(arg); }

static void buf_key_init(void) {
  buf_key_ok = pthread_key_create(&buf_key, buf_at_exit) == 0;
}

static void *gemm_buf(size_t bytes) {
  gemm_tbuf *b = &tl_buf;
  if (b->cap >= bytes) return b->p;
  buf_free(b);
  size_t cap = buf_full_bytes();
  if (cap < bytes) cap = bytes;
  char *raw = tg__malloc(cap + TG__ALIGN);
  if (!raw) return NULL;
  b->free_fn = tg__free_fn();
  pthread_once(&buf_once, buf_key_init);
  if (buf_key_ok) pthread_setspecific(buf_key, b);
  b->raw = raw;
  b->p = (void *)(((uintptr_t)raw + TG__ALIGN - 1) & ~(uintptr_t)(TG__ALIGN - 1));
  b->cap = cap;
  return b->p;
}

void tg__gemm_release(void) { buf_free(&tl_buf); }

/* ---- threads */

/* Multiply-adds below which a second thread costs more than it saves, and
 * the least each thread should get. */
#define PAR_MIN_WORK 4.0e6
#define PAR_PER_THREAD 2.0e6

/* Rows of C up to which B is read in place rather than packed (when it is
 * not transposed): tuned on the MNIST shapes. */
#ifndef DIRECT_B_MAX_M
#define DIRECT_B_MAX_M 64
#endif

static int gemm_threads(double work, int64_t units) {
  if (work < PAR_MIN_WORK) return 1;
  double most = work / PAR_PER_THREAD;
  if (most > (double)units) most = (double)units;
  return tg__par_threads(most > 64 ? 64 : (int)most);
}

/* ---- drivers and kernels for each type */
#define TG_CAT2(a, b) a##b
#define TG_CAT(a, b) TG_CAT2(a, b)

#define T float
#define P(x) TG_CAT(s_, x)
#include "gemm_drv.h"
#undef T
#undef P

#define T double
#define P(x) TG_CAT(d_, x)
#include "gemm_drv.h"
#undef T
#undef P

#define R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define R12(X) R6(X) X(6) X(7) X(8) X(9) X(10) X(11)

#if TG_GEMM_X86
/* AVX2 + FMA: 16 ymm registers hold a 6 x 2-vector tile (12), two B
 * vectors and one broadcast. */
#define KTARGET __attribute__((target("avx2,fma")))
#if defined(__GNUC__) && !defined(__clang__)
/* gcc 12 allocates this kernel's 15 live vectors by rotating the
 * accumulators through the FMA's other operands (vfmadd132ps and register
 * moves), which cost the float AVX2 kernel 8-9% on Zen 3 (measured; the
 * double kernel has the same tile and takes the same form, unmeasured);
 * an FMA written as asm with the accumulator in and out of one register
 * keeps the vfmadd231ps form. a*b+c is the same rounding either operand
 * order. */
KTARGET static inline __m256 s_fma_pinned(__m256 a, __m256 b, __m256 c) {
  __asm__("vfmadd231ps %2, %1, %0" : "+x"(c) : "x"(a), "x"(b));
  return c;
}
KTARGET static inline __m256d d_fma_pinned(__m256d a, __m256d b, __m256d c) {
  __asm__("vfmadd231pd %2, %1, %0" : "+x"(c) : "x"(a), "x"(b));
  return c;
}
#define S_FMA_AVX2 s_fma_pinned
#define D_FMA_AVX2 d_fma_pinned
#else
#define S_FMA_AVX2 _mm256_fmadd_ps
#define D_FMA_AVX2 _mm256_fmadd_pd
#endif
#define KMR 6
#define KROWS R6
#define KZERO _mm256_setzero_ps
#define KLOAD _mm256_loadu_ps
#define KSTORE _mm256_storeu_ps
#define KBCAST _mm256_broadcast_ss
#define KFMA S_FMA_AVX2
#define KMUL _mm256_mul_ps
#define KSET1 _mm256_set1_ps
#define KNAME s_kern_avx2
#define KT float
#define KV __m256
#define KVL 8
#define KEDGE s_edge
#include "gemm_kern.h"
#define KZERO _mm256_setzero_pd
#define KLOAD _mm256_loadu_pd
#define KSTORE _mm256_storeu_pd
#define KBCAST _mm256_broadcast_sd
#define KFMA D_FMA_AVX2
#define KMUL _mm256_mul_pd
#define KSET1 _mm256_set1_pd
#define KNAME d_kern_avx2
#define KT double
#define KV __m256d
#define KVL 4
#define KEDGE d_edge
#include "gemm_kern.h"
#undef KTARGET
#undef KMR
#undef KROWS

/* AVX-512F: 32 zmm registers hold a 12 x 2-vector tile (24), two B
 * vectors and the broadcasts. */
#define KTARGET __attribute__((target("avx512f")))
#define KMR 12
#define KROWS R12
#define KZERO _mm512_setzero_ps
#define KLOAD _mm512_loadu_ps
#define KSTORE _mm512_storeu_ps
#define KBCAST(p) _mm512_set1_ps(*(p))
#define KFMA _mm512_fmadd_ps
#define KMUL _mm512_mul_ps
#define KSET1 _mm512_set1_ps
#define KNAME s_kern_avx512
#define KT float
#define KV __m512
#define KVL 16
#define KEDGE s_edge
#include "gemm_kern.h"
#define KZERO _mm512_setzero_pd
#define KLOAD _mm512_loadu_pd
#define KSTORE _mm512_storeu_pd
#define KBCAST(p) _mm512_set1_pd(*(p))
#define KFMA _mm512_fmadd_pd
#define KMUL _mm512_mul_pd
#define KSET1 _mm512_set1_pd
#define KNAME d_kern_avx512
#define KT double
#define KV __m512d
#define KVL 8
#define KEDGE d_edge
#include "gemm_kern.h"
#undef KTARGET
#undef KMR
#undef KROWS

/* The AVX-512 kernels' text and tile (12 x 32 floats, 12 x 16 doubles) on
 * pairs of AVX2 vectors, with the AVX-512 blocking and packing: machines
 * without AVX-512 run it so the tests cover everything of that path but
 * its instructions. Slow (the tile does not fit in 16 registers), so it is
 * never the default. */
#define KTARGET __attribute__((target("avx2,fma")))
#define EMU static inline __attribute__((target("avx2,fma"), always_inline))
typedef struct { __m256 lo, hi; } s_pair;
typedef struct { __m256d lo, hi; } d_pair;
EMU s_pair sp_zero(void) { return (s_pair){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
EMU s_pair sp_load(const float *p) {
  return (s_pair){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
}
EMU void sp_store(float *p, s_pair v) {
  _mm256_storeu_ps(p, v.lo);
  _mm256_storeu_ps(p + 8, v.hi);
}
EMU s_pair sp_bcast(const float *p) {
  __m256 x = _mm256_broadcast_ss(p);
  return (s_pair){x, x};
}
EMU s_pair sp_set1(float x) {
  __m256 v = _mm256_set1_ps(x);
  return (s_pair){v, v};
}
EMU s_pair sp_mul(s_pair a, s_pair b) {
  return (s_pair){_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
}
EMU s_pair sp_fma(s_pair a, s_pair b, s_pair c) {
  return (s_pair){_mm256_fmadd_ps(a.lo, b.lo, c.lo),
                  _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
EMU d_pair dp_zero(void) { return (d_pair){_mm256_setzero_pd(), _mm256_setzero_pd()}; }
EMU d_pair dp_load(const double *p) {
  return (d_pair){_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)};
}
EMU void dp_store(double *p, d_pair v) {
  _mm256_storeu_pd(p, v.lo);
  _mm256_storeu_pd(p + 4, v.hi);
}
EMU d_pair dp_bcast(const double *p) {
  __m256d x = _mm256_broadcast_sd(p);
  return (d_pair){x, x};
}
EMU d_pair dp_set1(double x) {
  __m256d v = _mm256_set1_pd(x);
  return (d_pair){v, v};
}
EMU d_pair dp_mul(d_pair a, d_pair b) {
  return (d_pair){_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)};
}
EMU d_pair dp_fma(d_pair a, d_pair b, d_pair c) {
  return (d_pair){_mm256_fmadd_pd(a.lo, b.lo, c.lo),
                  _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
}
#undef EMU
#define KMR 12
#define KROWS R12
#define KZERO sp_zero
#define KLOAD sp_load
#define KSTORE sp_store
#define KBCAST sp_bcast
#define KFMA sp_fma
#define KMUL sp_mul
#define KSET1 sp_set1
#define KNAME s_kern_avx512_on_avx2
#define KT float
#define KV s_pair
#define KVL 16
#define KEDGE s_edge
#include "gemm_kern.h"
#define KZERO dp_zero
#define KLOAD dp_load
#define KSTORE dp_store
#define KBCAST dp_bcast
#define KFMA dp_fma
#define KMUL dp_mul
#define KSET1 dp_set1
#define KNAME d_kern_avx512_on_avx2
#define KT double
#define KV d_pair
#define KVL 8
#define KEDGE d_edge
#include "gemm_kern.h"
#undef KTARGET
#undef KMR
#undef KROWS

/* 8 x 8 transpose of r0..r7 (rows) into o0..o7 (columns). */
#define TR8(r0, r1, r2, r3, r4, r5, r6, r7, o0, o1, o2, o3, o4, o5, o6, o7)   \
  {                                                                          \
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), \
           t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3), \
           t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5), \
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7); \
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),          \
           s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),          \
           s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),          \
           s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),          \
           s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),          \
           s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),          \
           s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),          \
           s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));          \
    o0 = _mm256_permute2f128_ps(s0, s4, 0x20);                               \
    o1 = _mm256_permute2f128_ps(s1, s5, 0x20);                               \
    o2 = _mm256_permute2f128_ps(s2, s6, 0x20);                               \
    o3 = _mm256_permute2f128_ps(s3, s7, 0x20);                               \
    o4 = _mm256_permute2f128_ps(s0, s4, 0x31);                               \
    o5 = _mm256_permute2f128_ps(s1, s5, 0x31);                               \
    o6 = _mm256_permute2f128_ps(s2, s6, 0x31);                               \
    o7 = _mm256_permute2f128_ps(s3, s7, 0x31);                               \
  }

/* One 6-row micro-panel of a non-transposed float A for the AVX2 kernel:
 * eight columns at a time through the 8 x 8 transpose (rows 6 and 7 repeat
 * row 5). Each column is stored as 8 values at a stride of 6; the two extra
 * land on the next column's slot, written just after, so a chunk runs only
 * while a later column remains. */
__attribute__((target("avx2"))) static void s_pack_an_avx2(
    const float *restrict A, int64_t lda, int64_t kb, float *restrict ap) {
  const float *r0 = A, *r1 = A + lda, *r2 = A + 2 * lda, *r3 = A + 3 * lda,
              *r4 = A + 4 * lda, *r5 = A + 5 * lda;
  int64_t k = 0;
  for (; k + 8 < kb; k += 8) {
    __m256 x0 = _mm256_loadu_ps(r0 + k), x1 = _mm256_loadu_ps(r1 + k),
           x2 = _mm256_loadu_ps(r2 + k), x3 = _mm256_loadu_ps(r3 + k),
           x4 = _mm256_loadu_ps(r4 + k), x5 = _mm256_loadu_ps(r5 + k);
    __m256 o0, o1, o2, o3, o4, o5, o6, o7;
    TR8(x0, x1, x2, x3, x4, x5, x5, x5, o0, o1, o2, o3, o4, o5, o6, o7)
    float *d = ap + k * 6;
    _mm256_storeu_ps(d, o0);
    _mm256_storeu_ps(d + 6, o1);
    _mm256_storeu_ps(d + 12, o2);
    _mm256_storeu_ps(d + 18, o3);
    _mm256_storeu_ps(d + 24, o4);
    _mm256_storeu_ps(d + 30, o5);
    _mm256_storeu_ps(d + 36, o6);
    _mm256_storeu_ps(d + 42, o7);
  }
  for (; k < kb; k++) {
    float *d = ap + k * 6;
    d[0] = r0[k], d[1] = r1[k], d[2] = r2[k];
    d[3] = r3[k], d[4] = r4[k], d[5] = r5[k];
  }
}

/* One 12-row micro-panel of a non-transposed float A for the AVX-512
 * kernel's tile (and its AVX2 stand-in): eight columns at a time, rows 0-7
 * through one 8 x 8 transpose and rows 8-11 through another (its last four
 * rows repeat row 11; only the first four values of each column are kept).
 * The plain loop's gathers cost NN products with few columns half their
 * time (128x32x128: 51 GFLOP/s against 83 with the AVX2 kernel's packing). */
__attribute__((target("avx2"))) static void s_pack_an12_avx2(
    const float *restrict A, int64_t lda, int64_t kb, float *restrict ap) {
  const float *r[12];
  for (int i = 0; i < 12; i++) r[i] = A + i * lda;
  int64_t k = 0;
  for (; k + 8 <= kb; k += 8) {
    __m256 x0 = _mm256_loadu_ps(r[0] + k), x1 = _mm256_loadu_ps(r[1] + k),
           x2 = _mm256_loadu_ps(r[2] + k), x3 = _mm256_loadu_ps(r[3] + k),
           x4 = _mm256_loadu_ps(r[4] + k), x5 = _mm256_loadu_ps(r[5] + k),
           x6 = _mm256_loadu_ps(r[6] + k), x7 = _mm256_loadu_ps(r[7] + k);
    __m256 o0, o1, o2, o3, o4, o5, o6, o7;
    TR8(x0, x1, x2, x3, x4, x5, x6, x7, o0, o1, o2, o3, o4, o5, o6, o7)
    float *d = ap + k * 12;
    _mm256_storeu_ps(d, o0);
    _mm256_storeu_ps(d + 12, o1);
    _mm256_storeu_ps(d + 24, o2);
    _mm256_storeu_ps(d + 36, o3);
    _mm256_storeu_ps(d + 48, o4);
    _mm256_storeu_ps(d + 60, o5);
    _mm256_storeu_ps(d + 72, o6);
    _mm256_storeu_ps(d + 84, o7);
    x0 = _mm256_loadu_ps(r[8] + k), x1 = _mm256_loadu_ps(r[9] + k);
    x2 = _mm256_loadu_ps(r[10] + k), x3 = _mm256_loadu_ps(r[11] + k);
    TR8(x0, x1, x2, x3, x3, x3, x3, x3, o0, o1, o2, o3, o4, o5, o6, o7)
    _mm_storeu_ps(d + 8, _mm256_castps256_ps128(o0));
    _mm_storeu_ps(d + 20, _mm256_castps256_ps128(o1));
    _mm_storeu_ps(d + 32, _mm256_castps256_ps128(o2));
    _mm_storeu_ps(d + 44, _mm256_castps256_ps128(o3));
    _mm_storeu_ps(d + 56, _mm256_castps256_ps128(o4));
    _mm_storeu_ps(d + 68, _mm256_castps256_ps128(o5));
    _mm_storeu_ps(d + 80, _mm256_castps256_ps128(o6));
    _mm_storeu_ps(d + 92, _mm256_castps256_ps128(o7));
  }
  for (; k < kb; k++)
    for (int i = 0; i < 12; i++) ap[k * 12 + i] = r[i][k];
}

/* The transposed B block of a float product, eight rows of the stored B
 * at a time through an 8 x 8 register transpose (AVX2, so it serves the
 * AVX-512 kernel too). */
__attribute__((target("avx2"))) static void s_pack_bt_avx2(
    const float *restrict B, int64_t ldb, int64_t kb, int64_t nb, int nr,
    float *restrict bp) {
  for (int64_t j0 = 0; j0 < nb; j0 += nr, bp += kb * nr) {
    int n = nb - j0 < nr ? (int)(nb - j0) : nr;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
      const float *r = B + (j0 + j) * ldb;
      int64_t k = 0;
      for (; k + 8 <= kb; k += 8) {
        __m256 r0 = _mm256_loadu_ps(r + k), r1 = _mm256_loadu_ps(r + ldb + k),
               r2 = _mm256_loadu_ps(r + 2 * ldb + k),
               r3 = _mm256_loadu_ps(r + 3 * ldb + k),
               r4 = _mm256_loadu_ps(r + 4 * ldb + k),
               r5 = _mm256_loadu_ps(r + 5 * ldb + k),
               r6 = _mm256_loadu_ps(r + 6 * ldb + k),
               r7 = _mm256_loadu_ps(r + 7 * ldb + k);
        __m256 o0, o1, o2, o3, o4, o5, o6, o7;
        TR8(r0, r1, r2, r3, r4, r5, r6, r7, o0, o1, o2, o3, o4, o5, o6, o7)
        float *d = bp + k * nr + j;
        _mm256_storeu_ps(d, o0);
        _mm256_storeu_ps(d + nr, o1);
        _mm256_storeu_ps(d + 2 * nr, o2);
        _mm256_storeu_ps(d + 3 * nr, o3);
        _mm256_storeu_ps(d + 4 * nr, o4);
        _mm256_storeu_ps(d + 5 * nr, o5);
        _mm256_storeu_ps(d + 6 * nr, o6);
        _mm256_storeu_ps(d + 7 * nr, o7);
      }
      for (; k < kb; k++)
        for (int q = 0; q < 8; q++) bp[k * nr + j + q] = r[q * ldb + k];
    }
    for (; j < n; j++) {
      const float *r = B + (j0 + j) * ldb;
      for (int64_t k = 0; k < kb; k++) bp[k * nr + j] = r[k];
    }
    for (; j < nr; j++)
      for (int64_t k = 0; k < kb; k++) bp[k * nr + j] = 0;
  }
}
#endif /* TG_GEMM_X86 */

/* Block sizes: the A block (MC x KC) stays in L2, a B micro-panel
 * (KC x NR) in L1, the B block (KC x NC) in L3. */
#define S_AVX512_CFG(fn) \
  {fn, 12, 32, 256, 192, 2048, s_pack_bt_avx2, s_pack_an12_avx2}
#define D_AVX512_CFG(fn) {fn, 12, 16, 256, 96, 2048, NULL, NULL}
static const s_cfg s_cfgs[TG__GEMM_NKERNELS] = {
    [TG__GEMM_GENERIC] = {s_kern_generic, 4, 8, 256, 128, 2048, NULL, NULL},
#if TG_GEMM_X86
    [TG__GEMM_AVX2] = {s_kern_avx2, 6, 16, 256, 144, 2048, s_pack_bt_avx2,
                       s_pack_an_avx2},
    [TG__GEMM_AVX512] = S_AVX512_CFG(s_kern_avx512),
    [TG__GEMM_AVX512_ON_AVX2] = S_AVX512_CFG(s_kern_avx512_on_avx2),
#endif
};
static const d_cfg d_cfgs[TG__GEMM_NKERNELS] = {
    [TG__GEMM_GENERIC] = {d_kern_generic, 4, 8, 256, 64, 2048, NULL, NULL},
#if TG_GEMM_X86
    [TG__GEMM_AVX2] = {d_kern_avx2, 6, 8, 256, 72, 2048, NULL, NULL},
    [TG__GEMM_AVX512] = D_AVX512_CFG(d_kern_avx512),
    [TG__GEMM_AVX512_ON_AVX2] = D_AVX512_CFG(d_kern_avx512_on_avx2),
#endif
};

/* The largest buffer any kernel's blocks need (see buf_elems). */
static size_t buf_full_bytes(void) {
  size_t most = 0;
  for (int k = 0; k < TG__GEMM_NKERNELS; k++) {
    const s_cfg *s = &s_cfgs[k];
    const d_cfg *d = &d_cfgs[k];
    if (!s->fn || !d->fn) continue; /* not built for this machine */
    size_t sb = sizeof(float) *
                (size_t)(s_round_up(s_round_up(s->mc, s->mr) * s->kc, 16) +
                         s_round_up(s->nc, s->nr) * s->kc);
    size_t db = sizeof(double) *
                (size_t)(d_round_up(d_round_up(d->mc, d->mr) * d->kc, 8) +
                         d_round_up(d->nc, d->nr) * d->kc);
    if (sb > most) most = sb;
    if (db > most) most = db;
  }
  return most;
}

/* ---- choosing a kernel */

static const char *const kernel_names[TG__GEMM_NKERNELS] = {
    [TG__GEMM_GENERIC] = "generic",
    [TG__GEMM_AVX2] = "avx2",
    [TG__GEMM_AVX512] = "avx512",
    [TG__GEMM_AVX512_ON_AVX2] = "avx512-on-avx2",
};

const char *tg__gemm_kernel_name(int k) {
  return k >= 0 && k < TG__GEMM_NKERNELS ? kernel_names[k] : "?";
}

bool tg__gemm_kernel_supported(int k) {
  switch (k) {
    case TG__GEMM_GENERIC:
      return true;
#if TG_GEMM_X86
    case TG__GEMM_AVX2:
    case TG__GEMM_AVX512_ON_AVX2:
      return tg__cpu_features() & TG__CPU_AVX2_FMA;
    case TG__GEMM_AVX512:
      return tg__cpu_features() & TG__CPU_AVX512F;
#endif
    default:
      return false;
  }
}

static _Atomic int kernel_now = -1;
/* Set when a kernel was named (tg__gemm_set_kernel, TG_GEMM_KERNEL): the
 * built-in product is then used even in a build configured --with-blas. */
static _Atomic bool kernel_named;

/* The best the CPU has, unless TG_GEMM_KERNEL names another it also has. */
static int kernel_default(void) {
  int best = TG__GEMM_GENERIC;
  for (int k = TG__GEMM_NKERNELS - 1; k > TG__GEMM_GENERIC; k--)
    if (k != TG__GEMM_AVX512_ON_AVX2 && tg__gemm_kernel_supported(k)) {
      best = k;
      break;
    }
  const char *env = getenv("TG_GEMM_KERNEL");
  if (env)
    for (int k = 0; k < TG__GEMM_NKERNELS; k++)
      if (strcmp(env, kernel_names[k]) == 0 && tg__gemm_kernel_supported(k)) {
        atomic_store_explicit(&kernel_named, true, memory_order_relaxed);
        return k;
      }
  return best;
}

int tg__gemm_kernel(void) {
  int k = atomic_load_explicit(&kernel_now, memory_order_relaxed);
  if (k < 0) {
    k = kernel_default();
    atomic_store_explicit(&kernel_now, k, memory_order_relaxed);
  }
  return k;
}

int tg__gemm_set_kernel(int k) {
  if (k < 0) {
    atomic_store_explicit(&kernel_named, false, memory_order_relaxed);
    atomic_store_explicit(&kernel_now, -1, memory_order_relaxed);
    return TG_OK;
  }
  if (!tg__gemm_kernel_supported(k)) return TG_EINVAL;
  atomic_store_explicit(&kernel_named, true, memory_order_relaxed);
  atomic_store_explicit(&kernel_now, k, memory_order_relaxed);
  return TG_OK;
}

#ifdef TG_USE_CBLAS
/* Multiply-adds from which a product goes to the CBLAS: below it, the
 * library's own set-up costs more than the built-in kernel loses. */
#define BLAS_MIN_WORK 1.0e6

static bool use_blas(int64_t M, int64_t N, int64_t K, int64_t lda,
                     int64_t ldb, int64_t ldc) {
  int kern = tg__gemm_kernel(); /* resolves TG_GEMM_KERNEL first */
  (void)kern;
  if (atomic_load_explicit(&kernel_named, memory_order_relaxed)) return false;
  if ((double)M * (double)N * (double)K < BLAS_MIN_WORK) return false;
  return M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX &&
         ldb <= INT_MAX && ldc <= INT_MAX;
}
#define TRANS(t) ((t) ? CblasTrans : CblasNoTrans)
#endif

int tg__gemm_batch_threads(int64_t M, int64_t N, int64_t K, int64_t count) {
  double work = (double)M * (double)N * (double)K;
  /* A product that threads itself gains nothing from a batch split, and
   * one inside a parallel region would lose its own threads. */
  if (count < 2 || work >= PAR_MIN_WORK) return 1;
#ifdef TG_USE_CBLAS
  /* the CBLAS may run threads of its own: never call it from a region */
  if (use_blas(M, N, K, 1, 1, 1)) return 1;
#endif
  return gemm_threads(work * (double)count, count);
}

#ifdef TG_USE_CBLAS
/* The CBLAS has no bias: C is filled with its rows, then beta applies. */
#define FILL_BIAS(T)                                              \
  if (bias)                                                       \
    for (int64_t i = 0; i < M; i++)                               \
      memcpy(C + i * ldc, bias, (size_t)N * sizeof(T));
#endif

void tg__sgemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, const float *bias, float *C,
                    int64_t ldc) {
#ifdef TG_USE_CBLAS
  if (use_blas(M, N, K, lda, ldb, ldc)) {
    FILL_BIAS(float)
    cblas_sgemm(CblasRowMajor, TRANS(ta), TRANS(tb), (int)M, (int)N, (int)K,
                alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return;
  }
#endif
  s_gemm(&s_cfgs[tg__gemm_kernel()], NULL, NULL, ta, tb, M, N, K, alpha, A,
         lda, B, ldb, beta, bias, C, ldc);
}

void tg__dgemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    double alpha, const double *A, int64_t lda,
                    const double *B, int64_t ldb, double beta,
                    const double *bias, double *C, int64_t ldc) {
#ifdef TG_USE_CBLAS
  if (use_blas(M, N, K, lda, ldb, ldc)) {
    FILL_BIAS(double)
    cblas_dgemm(CblasRowMajor, TRANS(ta), TRANS(tb), (int)M, (int)N, (int)K,
                alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return;
  }
#endif
  d_gemm(&d_cfgs[tg__gemm_kernel()], NULL, NULL, ta, tb, M, N, K, alpha, A,
         lda, B, ldb, beta, bias, C, ldc);
}

void tg__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb,
               float beta, float *C, int64_t ldc) {
  tg__sgemm_bias(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

void tg__dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
               double alpha, const double *A, int64_t lda, const double *B,
               int64_t ldb, double beta, double *C, int64_t ldc) {
  tg__dgemm_bias(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

/* Always the built-in product: a CBLAS takes no packing callback. */
void tg__sgemm_pack_a(tg__gemm_pack_a_fn pack_a, void *ctx, bool tb,
                      int64_t M, int64_t N, int64_t K, float alpha,
                      const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc) {
  s_gemm(&s_cfgs[tg__gemm_kernel()], pack_a, ctx, false, tb, M, N, K, alpha,
         NULL, 0, B, ldb, beta, NULL, C, ldc);
}

void tg__dgemm_pack_a(tg__gemm_pack_a_fn pack_a, void *ctx, bool tb,
                      int64_t M, int64_t N, int64_t K, double alpha,
                      const double *B, int64_t ldb, double beta, double *C,
                      int64_t ldc) {
  d_gemm(&d_cfgs[tg__gemm_kernel()], pack_a, ctx, false, tb, M, N, K, alpha,
         NULL, 0, B, ldb, beta, NULL, C, ldc);
}
