/* ops/gelu.c: the exact GELU, y = x P(x) with P the standard normal CDF,
 * P(x) = erfc(-x/sqrt 2)/2 (= (1 + erf(x/sqrt 2))/2, but erfc keeps P's
 * relative precision for negative x); dy/dx = P(x) + x p(x), p(x) =
 * e^(-x^2/2)/sqrt(2 pi) the normal density. At x = +-inf the limits
 * (y = 0 at -inf; dy/dx = 0 and 1), not inf * 0. */
#include <tgmath.h>

#include "op.h"

#define GELU(T, S)                                                          \
  static inline T cdf_##S(T x) { return (T)0.5 * erfc(x * (T)-0.70710678118654752440); } \
  static inline T gelu_##S(T x) {                                           \
    T c = cdf_##S(x);                                                       \
    return c == 0 ? 0 : x * c;                                              \
  }                                                                         \
  static inline T dgelu_##S(T x) {                                          \
    T p = (T)0.39894228040143267794 * exp((T)-0.5 * x * x);                 \
    return p == 0 ? cdf_##S(x) : cdf_##S(x) + x * p;                        \
  }
TG__BOTH(GELU)
#define UNARY_NAME gelu
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) UNARY_PICK(gelu, x)
#define BWD(x, y, g) ((g) * UNARY_PICK(dgelu, x))
#define UNARY_BWD_SIMD 0
#include "unary.h"
