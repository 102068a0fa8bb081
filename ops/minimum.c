/* ops/minimum.c: z = the smaller of a and b elementwise, with NumPy
 * broadcasting; a NaN in either gives NaN. The gradient goes to the smaller
 * input: da += g where a < b, db += g where b < a, and at a tie each gets
 * g/2 (as PyTorch's minimum does), each summed over the elements its input
 * was broadcast to. */
#include "op.h"

#define BIN_F(x, y) ((x) < (y) || (x) != (x) ? (x) : (y))
#define BIN_DA(x, y, z, g) ((x) < (y) ? (g) : (x) == (y) ? (g) / 2 : 0)
#define BIN_DB(x, y, z, g) ((y) < (x) ? (g) : (x) == (y) ? (g) / 2 : 0)
#define BIN_SIMD TG__BIN_SIMD_ON
TG__BINARY_OP()

/* Normal inputs: ties are improbable, and a finite difference never
 * crosses one. */
static const tg_opcase cases[] = {TG__BIN_CASES(TG__DOM_ANY, TG__DOM_ANY)};

const tg_opdef tg__op_minimum = {.name = "minimum", .n_in = 2,
                                 .rule = tg__rule_bcast2,
                                 .forward = bin_forward,
                                 .backward = bin_backward, TG__CASES(cases)};

tg_tensor *tg_minimum(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, minimum, NULL, a, b);
}
