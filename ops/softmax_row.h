/* ops/softmax_row.h: one row of softmax of c x, for softmax, softmax_axis,
 * softmax_nll (c = 1, a product that is exact) and softmax_causal (its
 * scale): y = exp(c x - max c x) / sum exp(c x - max c x), the row maximum
 * subtracted so large inputs do not overflow. When lse is not NULL it
 * receives the row's log-sum-exp, max c x + ln sum exp(c x - max c x).
 * And its backward, dx += c y (g - sum_j g_j y_j). Include after
 * <tgmath.h>, so exp and log pick their float or double version. */
#ifndef TAPEGRAD_SOFTMAX_ROW_H
#define TAPEGRAD_SOFTMAX_ROW_H

#include "op.h"

/* gcc vectorises the row maximum when asked; clang cannot (it would warn
 * that the request failed), so it is asked only of gcc. */
#if defined(_OPENMP) && !defined(__clang__)
#define TG__SIMD_MAX(v) TG__PRAGMA_(omp simd reduction(max : v))
#else
#define TG__SIMD_MAX(v)
#endif

/* e^d for d = x - max x <= 0. float: vmath's straight-line expf, so the
 * row loops vectorise (libm's is a call per element); below -87.3, where
 * e^d < 2^-125 is lost in any row sum (whose largest term is 1), 0, as
 * libm's underflow gives for a masked -1e9. double: libm, for gradient
 * checks. */
static inline float tg__smexp_f32(float d) {
  float e = tg__expf_neg(d);
  return d < -87.3f ? 0.0f : e;
}
static inline double tg__smexp_f64(double d) { return exp(d); }
/* TG__SM_SIMD_S(x): x for the float loops around tg__smexp, nothing for
 * the double ones (a libm call: a vectorising pragma would fail). */
#define TG__SM_SIMD_f32(x) x
#define TG__SM_SIMD_f64(x)

#define SOFTMAX_ROW(T, S)                                                    \
  static inline void softmax_row_##S(const T *restrict x, T *restrict y,     \
                                     int64_t cols, T c, T *lse) {            \
    T m = c * x[0];                                                          \
    TG__SIMD_MAX(m)                                                          \
    for (int64_t j = 1; j < cols; j++) m = c * x[j] > m ? c * x[j] : m;      \
    T s = 0;                                                                 \
    TG__SM_SIMD_##S(TG__SIMD_SUM(s))                                         \
    for (int64_t j = 0; j < cols; j++)                                       \
      s += (y[j] = tg__smexp_##S(c * x[j] - m));                             \
    TG__SIMD                                                                 \
    for (int64_t j = 0; j < cols; j++) y[j] /= s;                            \
    if (lse) *lse = m + log(s);                                              \
  }                                                                          \
  /* Both loops vectorise (the dot product as a SIMD reduction, whose order \
   * depends on the row alone, so a row's result is the same whichever     \
   * thread computes it). */                                                \
  static inline void softmax_row_bwd_##S(const T *restrict y,                \
                                         const T *restrict g,                \
                                         T *restrict dx, int64_t cols, T c) { \
    T d = 0;                                                                 \
    TG__SIMD_SUM(d)                                                          \
    for (int64_t j = 0; j < cols; j++) d += g[j] * y[j];                     \
    TG__SIMD                                                                 \
    for (int64_t j = 0; j < cols; j++) dx[j] += c * (y[j] * (g[j] - d));     \
  }
TG__BOTH(SOFTMAX_ROW)

#endif
