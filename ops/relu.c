/* ops/relu.c: y = max(x, 0); dy/dx = 1 where x > 0, else 0. Tested away
 * from the kink at 0, where no derivative exists. */
#define UNARY_NAME relu
#define UNARY_DOMAIN TG__DOM_NONZERO
#define FWD(x) ((x) > 0 ? (x) : 0)
#define BWD(x, y, g) ((x) > 0 ? (g) : 0)
#define UNARY_FWD_SIMD 2
#include "unary.h"
