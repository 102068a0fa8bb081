/* ops/sub.c: z = a - b with NumPy broadcasting; da += g, db -= g, each
 * summed over the elements its input was broadcast to. */
#include "op.h"

#define BIN_F(x, y) ((x) - (y))
#define BIN_DA(x, y, z, g) (g)
#define BIN_DB(x, y, z, g) (-(g))
#define BIN_SIMD TG__BIN_SIMD_ON
TG__BINARY_OP()

static const tg_opcase cases[] = {TG__BIN_CASES(TG__DOM_ANY, TG__DOM_ANY)};

const tg_opdef tg__op_sub = {.name = "sub", .n_in = 2, .rule = tg__rule_bcast2,
                             .forward = bin_forward, .backward = bin_backward,
                             TG__CASES(cases)};

tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, sub, NULL, a, b);
}
