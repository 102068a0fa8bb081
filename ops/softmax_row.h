/* ops/softmax_row.h: one row of softmax, for softmax and softmax_nll:
 * y = exp(x - max x) / sum exp(x - max x), the row maximum subtracted so
 * large inputs do not overflow. When lse is not NULL it receives the row's
 * log-sum-exp, max x + ln sum exp(x - max x). Include after <tgmath.h>, so
 * exp and log pick their float or double version. */
#ifndef TAPEGRAD_SOFTMAX_ROW_H
#define TAPEGRAD_SOFTMAX_ROW_H

#include "op.h"

#define SOFTMAX_ROW(T, S)                                                    \
  static inline void softmax_row_##S(const T *restrict x, T *restrict y,     \
                                     int64_t cols, T *lse) {                 \
    T m = x[0];                                                              \
    for (int64_t j = 1; j < cols; j++) m = x[j] > m ? x[j] : m;              \
    T s = 0;                                                                 \
    for (int64_t j = 0; j < cols; j++) s += (y[j] = exp(x[j] - m));         \
    for (int64_t j = 0; j < cols; j++) y[j] /= s;                            \
    if (lse) *lse = m + log(s);                                              \
  }
TG__BOTH(SOFTMAX_ROW)

#endif
