/* ops/square.c: y = x^2; dy/dx = 2x. */
#define UNARY_NAME square
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) ((x) * (x))
#define BWD(x, y, g) (2 * (x) * (g))
#define UNARY_FWD_SIMD 2
#include "unary.h"
