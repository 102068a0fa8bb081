/* ops/log1p.c: y = ln(1 + x), exact for small x; dy/dx = 1/(1 + x).
 * log1p(-1) = -inf, below -1 NaN, as in C. */
#define UNARY_NAME log1p
#define UNARY_DOMAIN TG__DOM_POS
#define FWD(x) log1p(x)
#define BWD(x, y, g) ((g) / (1 + (x)))
#include "unary.h"
