/* ops/sigmoid.c: y = 1/(1+e^-x); dy/dx = y(1-y). For very negative x,
 * e^-x overflows to inf and y is exactly 0, which is the right limit. */
#define UNARY_NAME sigmoid
#define UNARY_DOMAIN TG__DOM_ANY
#include <math.h>


/* float: the vectorisable form in vmath.h; double: libm, for gradient
 * checks. */
#define FWD(x) _Generic((x), float: tg__sigmoidf, default: sigmoid_f64_)(x)
static inline double sigmoid_f64_(double x) { return 1 / (1 + exp(-x)); }
#define BWD(x, y, g) ((g) * (y) * (1 - (y)))
#define UNARY_FWD_SIMD 1
#include "unary.h"
