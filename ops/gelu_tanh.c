/* ops/gelu_tanh.c: PyTorch's GELU(approximate='tanh'),
 *   y = x (1 + tanh u)/2,  u = k (x + c x^3),  k = sqrt(2/pi), c = 0.044715,
 * written as y = x s with s = sigmoid(2u) (the same function: (1 + tanh u)/2
 * = sigmoid(2u), without 1 + tanh u cancelling for negative x). Its exact
 * derivative: dy/dx = s + x s (1 - s) 2k (1 + 3c x^2). At x = +-inf the
 * limits, not inf * 0. float: the vectorisable sigmoid of vmath.h. */
#include <tgmath.h>

#include "op.h"

TG__VINLINE float sig_f32(float x) { return tg__sigmoidf(x); }
TG__VINLINE double sig_f64(double x) { return 1 / (1 + exp(-x)); }
#define GELU_TANH(T, S)                                                     \
  TG__VINLINE T s2u_##S(T x) {                                            \
    return sig_##S((T)1.59576912160573071176 * (x + (T)0.044715 * x * x * x)); \
  }                                                                         \
  TG__VINLINE T gelu_##S(T x) {                                           \
    T s = s2u_##S(x);                                                       \
    return s == 0 ? 0 : x * s;                                              \
  }                                                                         \
  TG__VINLINE T dgelu_##S(T x) {                                          \
    T s = s2u_##S(x), d = s * (1 - s);                                      \
    return d == 0 ? s                                                       \
                  : s + x * d * (T)1.59576912160573071176 * (1 + (T)0.134145 * x * x); \
  }
TG__BOTH(GELU_TANH)
#define UNARY_NAME gelu_tanh
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) UNARY_PICK(gelu, x)
#define BWD(x, y, g) ((g) * UNARY_PICK(dgelu, x))
#define UNARY_FWD_SIMD 1
#define UNARY_BWD_SIMD 1
#include "unary.h"
