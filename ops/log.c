/* ops/log.c: y = ln x; dy/dx = 1/x. ln 0 = -inf, ln of a negative = NaN,
 * as in C; a tape with the finite check on names this op when it happens. */
#define UNARY_NAME log
#define UNARY_DOMAIN TG__DOM_POS
#define FWD(x) log(x)
#define BWD(x, y, g) ((g) / (x))
#include "unary.h"
