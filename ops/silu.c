/* ops/silu.c: y = x s, s = sigmoid(x); dy/dx = s + x s (1 - s). At
 * x = -inf (s = 0) and +inf (1 - s = 0) the limits, not inf * 0. float:
 * the vectorisable sigmoid of vmath.h; double: libm. */
#include <tgmath.h>

#include "op.h"

TG__VINLINE float sig_f32(float x) { return tg__sigmoidf(x); }
TG__VINLINE double sig_f64(double x) { return 1 / (1 + exp(-x)); }
#define SILU(T, S)                                                          \
  TG__VINLINE T silu_##S(T x) {                                           \
    T s = sig_##S(x);                                                       \
    return s == 0 ? 0 : x * s;                                              \
  }                                                                         \
  TG__VINLINE T dsilu_##S(T x) {                                          \
    T s = sig_##S(x), d = s * (1 - s);                                      \
    return d == 0 ? s : s + x * d;                                          \
  }
TG__BOTH(SILU)
#define UNARY_NAME silu
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) UNARY_PICK(silu, x)
#define BWD(x, y, g) ((g) * UNARY_PICK(dsilu, x))
#define UNARY_FWD_SIMD 1
#define UNARY_BWD_SIMD 1
#include "unary.h"
