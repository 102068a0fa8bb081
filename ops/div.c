/* ops/div.c: z = a / b with NumPy broadcasting; da += g / b,
 * db -= g * a / b^2 = g * z / b, each summed over the elements its input
 * was broadcast to. b = 0 gives IEEE infinities or NaN (see
 * tg_tape_set_check_finite). */
#include "op.h"

#define BIN_F(x, y) ((x) / (y))
#define BIN_DA(x, y, z, g) ((g) / (y))
#define BIN_DB(x, y, z, g) (-(g) * (z) / (y))
#define BIN_SIMD TG__BIN_SIMD_ON
TG__BINARY_OP()

static const tg_opcase cases[] = {TG__BIN_CASES(TG__DOM_ANY, TG__DOM_NONZERO)};

const tg_opdef tg__op_div = {.name = "div", .n_in = 2, .rule = tg__rule_bcast2,
                             .forward = bin_forward, .backward = bin_backward,
                             TG__CASES(cases)};

tg_tensor *tg_div(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, div, NULL, a, b);
}
