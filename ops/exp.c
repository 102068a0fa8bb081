/* ops/exp.c: y = e^x; dy/dx = y. */
#define UNARY_NAME exp
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) exp(x)
#define BWD(x, y, g) ((g) * (y))
#include "unary.h"
