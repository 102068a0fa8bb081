/* ops/tanh.c: y = tanh x; dy/dx = 1 - y^2. */
#define UNARY_NAME tanh
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) tanh(x)
#define BWD(x, y, g) ((g) * (1 - (y) * (y)))
#include "unary.h"
