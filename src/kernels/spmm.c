/* src/kernels/spmm.c: float matrix products whose left operand is mostly exact
 * zeros, as image data is (MNIST's pixels are 81% zeros). tg_matmul uses
 * them for a caller-owned left operand dense enough in zeros: the forward
 * C = A B and the weight gradient dB += A^T dC then cost nnz(A) N
 * multiply-adds instead of M K N. The sums are those of the dense product
 * without the zero terms, in a fixed order: the same for any thread count. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Threads split the output's columns in blocks of this many. */
#define JB 32

/* Largest share of non-zeros at which skipping the zeros pays: the dense
 * kernel does about twice the multiply-adds per cycle. */
#define MAX_DENSITY 0.3

/* Multiply-adds below which one thread does the whole product. */
#define PAR_MIN_WORK 4.0e6

bool tg__spmm_enabled(void) {
  static int on = -1; /* read once; a benign race sets the same value */
  if (on < 0) {
    const char *e = getenv("TG_SPARSE_INPUT");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}

int64_t tg__spmm_max_nnz(int64_t M, int64_t K) {
  return (int64_t)(MAX_DENSITY * (double)M * (double)K);
}

int64_t tg__spmm_nnz(const float *A, int64_t M, int64_t K) {
  int64_t limit = tg__spmm_max_nnz(M, K), nnz = 0;
  for (int64_t i = 0; i < M; i++) {
    int64_t row = 0;
    TG__SIMD
    for (int64_t k = 0; k < K; k++) row += A[i * K + k] != 0;
    nnz += row;
    if (nnz > limit) return -1;
  }
  return nnz;
}

/* Appends the non-zeros of a[k0, K) to colidx/val at p; returns the new
 * p. */
static int64_t row_generic(const float *a, int64_t k0, int64_t K,
                           int32_t *colidx, float *val, int64_t p) {
  for (int64_t k = k0; k < K; k++)
    if (a[k] != 0) {
      colidx[p] = (int32_t)k;
      val[p++] = a[k];
    }
  return p;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* Eight at a time, without a branch per element: a compare gives the mask
 * of non-zeros, pext turns it into the permutation that packs them to the
 * front, and all eight lanes are stored (up to 7 past the end, which the
 * caller's buffers leave room for) while p advances by the count. */
__attribute__((target("avx2,bmi2,popcnt"))) static int64_t row_avx2(
    const float *a, int64_t K, int32_t *colidx, float *val, int64_t p) {
  int64_t k = 0;
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (; k + 8 <= K; k += 8) {
    __m256 v = _mm256_loadu_ps(a + k);
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
    if (!m) continue;
    uint64_t bytes = _pdep_u64(m, 0x0101010101010101ull) * 0xFF;
    uint64_t idx = _pext_u64(0x0706050403020100ull, bytes);
    __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)idx));
    _mm256_storeu_ps(val + p, _mm256_permutevar8x32_ps(v, perm));
    _mm256_storeu_si256((__m256i *)(colidx + p),
                        _mm256_add_epi32(_mm256_permutevar8x32_epi32(lane, perm),
                                         _mm256_set1_epi32((int)k)));
    p += __builtin_popcount(m);
  }
  return row_generic(a, k, K, colidx, val, p);
}
#endif

void tg__spmm_build(tg__sparse *s, const float *A, int64_t M, int64_t K,
                    bool by_col) {
  int64_t p = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  /* pext is fast from Zen 3 and Haswell on */
  bool vec = (tg__cpu_features() & TG__CPU_BMI2_POPCNT) &&
             tg__gemm_kernel() != TG__GEMM_GENERIC;
#else
  bool vec = false;
#endif
  for (int64_t i = 0; i < M; i++) {
    s->rowptr[i] = (int32_t)p;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (vec) {
      p = row_avx2(A + i * K, K, s->colidx, s->val, p);
      continue;
    }
#endif
    p = row_generic(A + i * K, 0, K, s->colidx, s->val, p);
  }
  s->rowptr[M] = (int32_t)p;
  s->m = M;
  s->k = K;
  s->nnz = p;
  if (!by_col) return;
  /* The transpose by a counting sort: rows stay in order within a column. */
  memset(s->colptr, 0, (size_t)(K + 1) * sizeof *s->colptr);
  for (int64_t q = 0; q < p; q++) s->colptr[s->colidx[q] + 1]++;
  for (int64_t k = 0; k < K; k++) s->colptr[k + 1] += s->colptr[k];
  for (int64_t i = 0; i < M; i++)
    for (int64_t q = s->rowptr[i]; q < s->rowptr[i + 1]; q++) {
      int32_t at = s->colptr[s->colidx[q]]++;
      s->rowidx[at] = (int32_t)i;
      s->cval[at] = s->val[q];
    }
  for (int64_t k = K; k > 0; k--) s->colptr[k] = s->colptr[k - 1];
  s->colptr[0] = 0;
}

/* The portable kernels. Each covers the columns [j0, j1) of the output. */
/* The bias, when there is one, is added after the row's sum, as a separate
 * add of the product would: the sums are the same whether the bias was
 * fused or not. */
static void fwd_generic(const tg__sparse *s, const float *restrict B,
                        const float *restrict bias, int64_t N,
                        float *restrict C, int64_t j0, int64_t j1) {
  for (int64_t i = 0; i < s->m; i++) {
    float *c = C + i * N;
    for (int64_t j = j0; j < j1; j++) c[j] = 0;
    for (int32_t q = s->rowptr[i]; q < s->rowptr[i + 1]; q++) {
      float a = s->val[q];
      const float *b = B + (int64_t)s->colidx[q] * N;
      TG__SIMD
      for (int64_t j = j0; j < j1; j++) c[j] += a * b[j];
    }
    if (bias) {
      TG__SIMD
      for (int64_t j = j0; j < j1; j++) c[j] += bias[j];
    }
  }
}

static void tn_generic(const tg__sparse *s, const float *restrict G,
                       const float *restrict unused, int64_t N,
                       float *restrict D, int64_t j0, int64_t j1) {
  (void)unused;
  for (int64_t k = 0; k < s->k; k++) {
    float *d = D + k * N;
    for (int32_t q = s->colptr[k]; q < s->colptr[k + 1]; q++) {
      float a = s->cval[q];
      const float *g = G + (int64_t)s->rowidx[q] * N;
      TG__SIMD
      for (int64_t j = j0; j < j1; j++) d[j] += a * g[j];
    }
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SPMM_X86 1
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/* Lanes [0, n) of a vector set, n in [1, 8]. */
AVX2 static inline __m256i tail_mask(int64_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
}

/* An output row segment of 4 vectors (32 columns) stays in registers while
 * the non-zeros of its row (forward) or column (weight gradient) stream
 * past; the last, narrower segment uses one masked vector at a time. */
AVX2 static void fwd_avx2(const tg__sparse *s, const float *restrict B,
                          const float *restrict bias, int64_t N,
                          float *restrict C, int64_t j0, int64_t j1) {
  /* Column slabs outermost: the slab of B a row block reads (K x 32
   * floats) stays in L2 across all the rows. */
  int64_t j = j0;
  for (; j + 32 <= j1; j += 32)
    for (int64_t i = 0; i < s->m; i++) {
      const int32_t q0 = s->rowptr[i], q1 = s->rowptr[i + 1];
      __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
      for (int32_t q = q0; q < q1; q++) {
        __m256 a = _mm256_set1_ps(s->val[q]);
        const float *b = B + (int64_t)s->colidx[q] * N + j;
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 8), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 16), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 24), c3);
      }
      if (bias) {
        c0 = _mm256_add_ps(c0, _mm256_loadu_ps(bias + j));
        c1 = _mm256_add_ps(c1, _mm256_loadu_ps(bias + j + 8));
        c2 = _mm256_add_ps(c2, _mm256_loadu_ps(bias + j + 16));
        c3 = _mm256_add_ps(c3, _mm256_loadu_ps(bias + j + 24));
      }
      float *c = C + i * N + j;
      _mm256_storeu_ps(c, c0);
      _mm256_storeu_ps(c + 8, c1);
      _mm256_storeu_ps(c + 16, c2);
      _mm256_storeu_ps(c + 24, c3);
    }
  for (; j < j1; j += 8) {
    __m256i m = tail_mask(j1 - j);
    for (int64_t i = 0; i < s->m; i++) {
      __m256 c0 = _mm256_setzero_ps();
      for (int32_t q = s->rowptr[i]; q < s->rowptr[i + 1]; q++) {
        const float *b = B + (int64_t)s->colidx[q] * N + j;
        c0 = _mm256_fmadd_ps(_mm256_set1_ps(s->val[q]), _mm256_maskload_ps(b, m), c0);
      }
      if (bias) c0 = _mm256_add_ps(c0, _mm256_maskload_ps(bias + j, m));
      _mm256_maskstore_ps(C + i * N + j, m, c0);
    }
  }
}

AVX2 static void tn_avx2(const tg__sparse *s, const float *restrict G,
                         const float *restrict unused, int64_t N,
                         float *restrict D, int64_t j0, int64_t j1) {
  (void)unused;
  /* Column slabs outermost: the slab of G (M x 32 floats) stays in L1. */
  int64_t j = j0;
  for (; j + 32 <= j1; j += 32)
    for (int64_t k = 0; k < s->k; k++) {
      const int32_t q0 = s->colptr[k], q1 = s->colptr[k + 1];
      if (q0 == q1) continue; /* a column of zeros adds nothing */
      float *d = D + k * N + j;
      __m256 c0 = _mm256_loadu_ps(d), c1 = _mm256_loadu_ps(d + 8),
             c2 = _mm256_loadu_ps(d + 16), c3 = _mm256_loadu_ps(d + 24);
      for (int32_t q = q0; q < q1; q++) {
        __m256 a = _mm256_set1_ps(s->cval[q]);
        const float *g = G + (int64_t)s->rowidx[q] * N + j;
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(g), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(g + 8), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(g + 16), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(g + 24), c3);
      }
      _mm256_storeu_ps(d, c0);
      _mm256_storeu_ps(d + 8, c1);
      _mm256_storeu_ps(d + 16, c2);
      _mm256_storeu_ps(d + 24, c3);
    }
  for (; j < j1; j += 8) {
    __m256i m = tail_mask(j1 - j);
    for (int64_t k = 0; k < s->k; k++) {
      const int32_t q0 = s->colptr[k], q1 = s->colptr[k + 1];
      if (q0 == q1) continue;
      __m256 c0 = _mm256_maskload_ps(D + k * N + j, m);
      for (int32_t q = q0; q < q1; q++) {
        const float *g = G + (int64_t)s->rowidx[q] * N + j;
        c0 = _mm256_fmadd_ps(_mm256_set1_ps(s->cval[q]), _mm256_maskload_ps(g, m), c0);
      }
      _mm256_maskstore_ps(D + k * N + j, m, c0);
    }
  }
}
#else
#define SPMM_X86 0
#endif

/* fn(s, X, bias, N, Y, j0, j1); the weight gradient has no bias. */
typedef void (*spmm_fn)(const tg__sparse *, const float *, const float *,
                        int64_t, float *, int64_t, int64_t);

typedef struct {
  spmm_fn fn;
  const tg__sparse *s;
  const float *X, *bias;
  int64_t N, blocks;
  float *Y;
} spmm_job;

/* Thread t's share of the output's columns, in whole blocks of JB. */
static void part(void *ctx, int t, int n) {
  const spmm_job *j = ctx;
  int64_t j0 = j->blocks * t / n * JB, j1 = j->blocks * (t + 1) / n * JB;
  if (j1 > j->N) j1 = j->N;
  if (j1 > j0) j->fn(j->s, j->X, j->bias, j->N, j->Y, j0, j1);
}

static void run(spmm_fn fn, const tg__sparse *s, const float *X,
                const float *bias, int64_t N, float *Y) {
  double work = (double)s->nnz * (double)N;
  int64_t blocks = (N + JB - 1) / JB;
  int nt = work < PAR_MIN_WORK ? 1 : tg__par_threads(blocks > 64 ? 64 : (int)blocks);
  spmm_job j = {fn, s, X, bias, N, blocks, Y};
  tg__par_run(nt, part, &j);
}

static bool use_avx2(void) {
  return SPMM_X86 && tg__gemm_kernel() != TG__GEMM_GENERIC;
}

void tg__spmm_f32(const tg__sparse *s, const float *B, const float *bias,
                  int64_t N, float *C) {
#if SPMM_X86
  if (use_avx2()) {
    run(fwd_avx2, s, B, bias, N, C);
    return;
  }
#endif
  run(fwd_generic, s, B, bias, N, C);
}

void tg__spmm_tn_f32(const tg__sparse *s, const float *G, int64_t N,
                     float *D) {
#if SPMM_X86
  if (use_avx2()) {
    run(tn_avx2, s, G, NULL, N, D);
    return;
  }
#endif
  run(tn_generic, s, G, NULL, N, D);
}
