/* ops/softplus.c: y = ln(1 + e^x), computed as max(x, 0) + log1p(e^-|x|),
 * which neither overflows nor loses small values; dy/dx = sigmoid(x).
 * float: the vectorisable sigmoid of vmath.h; double: libm. */
#include <tgmath.h>

#include "op.h"

TG__VINLINE float sig_f32(float x) { return tg__sigmoidf(x); }
TG__VINLINE double sig_f64(double x) { return 1 / (1 + exp(-x)); }
#define UNARY_NAME softplus
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) (((x) > 0 ? (x) : 0) + log1p(exp(-fabs(x))))
#define BWD(x, y, g) ((g) * UNARY_PICK(sig, x))
#define UNARY_BWD_SIMD 1
#include "unary.h"
