/* ops/neg.c: y = -x; dx = -g. */
#define UNARY_NAME neg
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) (-(x))
#define BWD(x, y, g) (-(g))
#define UNARY_FWD_SIMD 2
#include "unary.h"
