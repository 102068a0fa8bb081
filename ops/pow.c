/* ops/pow.c: z = a^b elementwise for a tensor exponent, with NumPy
 * broadcasting; da += g b a^(b-1), db += g z ln a, each summed over the
 * elements its input was broadcast to. As in PyTorch, da is 0 where b = 0
 * and db is 0 where z = 0 (a = 0 with b > 0), where the formulas would give
 * 0 * inf. A negative a with a non-integer b gives NaN, as pow does. */
#include <tgmath.h>

#include "op.h"

#define BIN_F(x, y) pow(x, y)
#define BIN_DA(x, y, z, g) ((y) == 0 ? 0 : (g) * (y) * pow(x, (y) - 1))
#define BIN_DB(x, y, z, g) ((z) == 0 ? 0 : (g) * (z) * log(x))
#define BIN_SIMD TG__BIN_SIMD_OFF /* a libm call per element */
TG__BINARY_OP()

static const tg_opcase cases[] = {TG__BIN_CASES(TG__DOM_POS, TG__DOM_ANY)};

const tg_opdef tg__op_pow = {.name = "pow", .n_in = 2, .rule = tg__rule_bcast2,
                             .forward = bin_forward, .backward = bin_backward,
                             TG__CASES(cases)};

tg_tensor *tg_pow(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, pow, NULL, a, b);
}
