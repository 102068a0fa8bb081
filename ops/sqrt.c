/* ops/sqrt.c: y = sqrt x; dy/dx = 1/(2y). sqrt 0 = 0 with an infinite
 * derivative, sqrt of a negative = NaN, as in C. */
#define UNARY_NAME sqrt
#define UNARY_DOMAIN TG__DOM_POS
#define FWD(x) sqrt(x)
#define BWD(x, y, g) ((g) / (2 * (y)))
#include "unary.h"
