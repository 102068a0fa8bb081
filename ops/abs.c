/* ops/abs.c: y = |x|; dy/dx = sign x, taken as 0 at x = 0 (and at NaN),
 * PyTorch's convention where no derivative exists. Tested away from 0. */
#define UNARY_NAME abs
#define UNARY_DOMAIN TG__DOM_NONZERO
#define FWD(x) fabs(x)
#define BWD(x, y, g) ((x) > 0 ? (g) : (x) < 0 ? -(g) : 0)
#define UNARY_FWD_SIMD 2
#include "unary.h"
