/* ops/softmax_row.h: one row of softmax of c x, for softmax, softmax_axis,
 * softmax_nll (c = 1, a product that is exact) and softmax_causal (its
 * scale): y = exp(c x - max c x) / sum exp(c x - max c x), the row maximum
 * subtracted so large inputs do not overflow. When lse is not NULL it
 * receives the row's log-sum-exp, max c x + ln sum exp(c x - max c x).
 * And its backward, dx += c y (g - sum_j g_j y_j). Include after
 * <tgmath.h>, so exp and log pick their float or double version.
 *
 * The callers compile their row loops once per vector path
 * (TG__SIMD_EACH); these helpers are TG__VINLINE, so each path's copy has
 * them inlined and vectorised for its instruction set. Every path gives
 * the same bits: a row's sums run in TG__SM_LANES partial sums, element j
 * into sum j mod TG__SM_LANES, added pairwise in a fixed order at the end
 * (an OpenMP simd reduction's order would depend on the vector width), and
 * the maximum is kept the same way. */
#ifndef TAPEGRAD_SOFTMAX_ROW_H
#define TAPEGRAD_SOFTMAX_ROW_H

#include "op.h"

/* One AVX-512 vector of floats: the exp loop's sum needs no more to hide
 * the adds' latency, and narrower paths run it as two or four vectors. */
#define TG__SM_LANES 16
/* Before the loop over a whole block's lanes in the cheap passes (the
 * maximum, the backward's dot product): unrolled, the block is vectorised
 * as straight-line code (SLP) and its lanes' sums stay in registers; as a
 * vectorised loop of two or four vectors (AVX2, SSE2) gcc keeps them in
 * memory, a store and a load per vector. */
#if defined(__GNUC__)
#define TG__SM_UNROLL _Pragma("GCC unroll 16")
#else
#define TG__SM_UNROLL
#endif

/* The last block of fewer than TG__SM_LANES elements runs as one whole
 * block whose lanes past the row's end add +0 to their sum (which starts
 * at +0, so it never holds -0 and the add changes no bit), take the
 * maximum with -inf, and store nothing. The AVX paths do it with masked
 * moves. SSE2 has none: the generic path copies the block to a padded
 * buffer first (element by element into the same lanes would leave the
 * sums in memory rather than in registers), except in the dot product,
 * whose unrolled blocks (TG__SM_UNROLL) keep them in registers until the
 * tail, which adds its elements one by one. Same sums, every way. */
#define TG__SM_MASKED_generic false
#define TG__SM_MASKED_avx2 true
#define TG__SM_MASKED_avx512 true

/* e^d for d = x - max x <= 0. float: vmath's straight-line expf, so the
 * row loops vectorise (libm's is a call per element); below -87.3, where
 * e^d < 2^-125 is lost in any row sum (whose largest term is 1), 0, as
 * libm's underflow gives for a masked -1e9 (and for -inf). double: libm,
 * for gradient checks. */
TG__VINLINE float tg__smexp_f32(float d) {
  float e = tg__expf_neg(d);
  return d < -87.3f ? 0.0f : e;
}
TG__VINLINE double tg__smexp_f64(double d) { return exp(d); }
/* TG__SM_SIMD_S(x): x for the float loops around tg__smexp, nothing for
 * the double ones (a libm call: a vectorising pragma would fail, and a
 * masked tail would only call it for the lanes past the end). */
#define TG__SM_SIMD_f32(x) x
#define TG__SM_SIMD_f64(x)
/* TG__SM_VEC_S: whether those loops vectorise. */
#define TG__SM_VEC_f32 true
#define TG__SM_VEC_f64 false

#define SOFTMAX_ROW(T, S)                                                    \
  /* The lanes' sums, pairwise. */                                           \
  TG__VINLINE T tg__sm_pairs_##S(const T *a) {                               \
    return (((a[0] + a[1]) + (a[2] + a[3])) +                                \
            ((a[4] + a[5]) + (a[6] + a[7]))) +                               \
           (((a[8] + a[9]) + (a[10] + a[11])) +                              \
            ((a[12] + a[13]) + (a[14] + a[15])));                            \
  }                                                                          \
  /* max_j c x_j (-inf for a row of -inf; NaN only through the sums). */    \
  TG__VINLINE T tg__sm_max_##S(const T *restrict x, int64_t n, T c, bool mt) { \
    T a[TG__SM_LANES];                                                       \
    for (int l = 0; l < TG__SM_LANES; l++) a[l] = -INFINITY;                 \
    int64_t j = 0;                                                           \
    for (; j + TG__SM_LANES <= n; j += TG__SM_LANES) {                       \
      TG__SIMD                                                               \
      for (int l = 0; l < TG__SM_LANES; l++) {                               \
        T v = c * x[j + l];                                                  \
        a[l] = v > a[l] ? v : a[l];                                          \
      }                                                                      \
    }                                                                        \
    const int64_t r = n - j;                                                 \
    if (r && mt) {                                                           \
      TG__SIMD                                                               \
      for (int l = 0; l < TG__SM_LANES; l++) {                               \
        T v = l < r ? c * x[j + l] : -INFINITY;                              \
        a[l] = v > a[l] ? v : a[l];                                          \
      }                                                                      \
    } else if (r) {                                                          \
      T b[TG__SM_LANES];                                                     \
      for (int l = 0; l < TG__SM_LANES; l++)                                 \
        b[l] = l < r ? c * x[j + l] : -INFINITY;                             \
      TG__SIMD                                                               \
      for (int l = 0; l < TG__SM_LANES; l++) a[l] = b[l] > a[l] ? b[l] : a[l]; \
    }                                                                        \
    T m = a[0];                                                              \
    for (int l = 1; l < TG__SM_LANES; l++) m = a[l] > m ? a[l] : m;          \
    return m;                                                                \
  }                                                                          \
  /* sum_j e^(c x_j - m), storing y_j = e^(c x_j - m) (logs: c x_j - m). */ \
  TG__VINLINE T tg__sm_expsum_##S(const T *restrict x, T *restrict y,        \
                                  int64_t n, T c, T m, bool logs, bool mt) { \
    T a[TG__SM_LANES] = {0};                                                 \
    int64_t j = 0;                                                           \
    for (; j + TG__SM_LANES <= n; j += TG__SM_LANES) {                       \
      TG__SM_SIMD_##S(TG__SIMD)                                              \
      for (int l = 0; l < TG__SM_LANES; l++) {                               \
        T d = c * x[j + l] - m, e = tg__smexp_##S(d);                        \
        y[j + l] = logs ? d : e;                                             \
        a[l] += e;                                                           \
      }                                                                      \
    }                                                                        \
    const int64_t r = n - j;                                                 \
    if (r && !TG__SM_VEC_##S) { /* a libm call per element */              \
      for (int l = 0; l < r; l++) {                                          \
        T d = c * x[j + l] - m, e = tg__smexp_##S(d);                        \
        y[j + l] = logs ? d : e;                                             \
        a[l] += e;                                                           \
      }                                                                      \
    } else if (r && mt) {                                                    \
      TG__SM_SIMD_##S(TG__SIMD)                                              \
      for (int l = 0; l < TG__SM_LANES; l++) {                               \
        /* (written so that gcc if-converts it; the same d twice) */         \
        T e = l < r ? tg__smexp_##S(c * x[j + l] - m) : 0;                   \
        if (l < r) y[j + l] = logs ? c * x[j + l] - m : e;                   \
        a[l] += e;                                                           \
      }                                                                      \
    } else if (r) {                                                          \
      T b[TG__SM_LANES];                                                     \
      for (int l = 0; l < TG__SM_LANES; l++)                                 \
        b[l] = l < r ? c * x[j + l] - m : -INFINITY;                         \
      TG__SM_SIMD_##S(TG__SIMD)                                              \
      for (int l = 0; l < TG__SM_LANES; l++) {                               \
        T e = tg__smexp_##S(b[l]);                                           \
        a[l] += e;                                                           \
        b[l] = logs ? b[l] : e;                                              \
      }                                                                      \
      for (int l = 0; l < r; l++) y[j + l] = b[l];                           \
    }                                                                        \
    return tg__sm_pairs_##S(a);                                              \
  }                                                                          \
  /* sum_j g_j y_j, or sum_j g_j when not prod (y unread). */               \
  TG__VINLINE T tg__sm_dot_##S(const T *restrict g, const T *restrict y,     \
                               int64_t n, bool prod, bool mt) {              \
    T a[TG__SM_LANES] = {0};                                                 \
    int64_t j = 0;                                                           \
    for (; j + TG__SM_LANES <= n; j += TG__SM_LANES) {                       \
      TG__SM_UNROLL                                                          \
      for (int l = 0; l < TG__SM_LANES; l++)                                 \
        a[l] += prod ? g[j + l] * y[j + l] : g[j + l];                       \
    }                                                                        \
    const int64_t r = n - j;                                                 \
    if (r && mt) {                                                           \
      TG__SIMD                                                               \
      for (int l = 0; l < TG__SM_LANES; l++)                                 \
        a[l] += l < r ? (prod ? g[j + l] * y[j + l] : g[j + l]) : 0;         \
    } else {                                                                 \
      for (int l = 0; l < r; l++)                                            \
        a[l] += prod ? g[j + l] * y[j + l] : g[j + l];                       \
    }                                                                        \
    return tg__sm_pairs_##S(a);                                              \
  }                                                                          \
  /* mt: the path has masked moves (TG__SM_MASKED_isa). */                   \
  TG__VINLINE void softmax_row_##S(const T *restrict x, T *restrict y,       \
                                   int64_t cols, T c, T *lse, bool mt) {     \
    T m = tg__sm_max_##S(x, cols, c, mt);                                    \
    T s = tg__sm_expsum_##S(x, y, cols, c, m, false, mt);                    \
    TG__SIMD                                                                 \
    for (int64_t j = 0; j < cols; j++) y[j] /= s;                            \
    if (lse) *lse = m + log(s);                                              \
  }                                                                          \
  TG__VINLINE void softmax_row_bwd_##S(const T *restrict y,                  \
                                       const T *restrict g, T *restrict dx,  \
                                       int64_t cols, T c, bool mt) {         \
    T d = tg__sm_dot_##S(g, y, cols, true, mt);                              \
    TG__SIMD                                                                 \
    for (int64_t j = 0; j < cols; j++) dx[j] += c * (y[j] * (g[j] - d));     \
  }
TG__BOTH(SOFTMAX_ROW)
#undef SOFTMAX_ROW

#endif
