/* ops/add.c: z = a + b with NumPy broadcasting; da += g, db += g, each
 * summed over the elements its input was broadcast to. [N,C] + [C] (a
 * bias) is the row-broadcast walk: rows of a contiguous add, and db the
 * column sums of g. */
#include "op.h"

#define BIN_F(x, y) ((x) + (y))
#define BIN_DA(x, y, z, g) (g)
#define BIN_DB(x, y, z, g) (g)
#define BIN_SIMD TG__BIN_SIMD_ON
TG__BINARY_OP()

static const tg_opcase cases[] = {
    TG__BIN_CASES(TG__DOM_ANY, TG__DOM_ANY),
    {.ndim = {1, 1}, .shape = {{6}, {6}}},
    {.ndim = {4, 4}, .shape = {{2, 1, 3, 2}, {2, 1, 3, 2}}},
};

const tg_opdef tg__op_add = {.name = "add", .n_in = 2, .rule = tg__rule_bcast2,
                             .forward = bin_forward, .backward = bin_backward,
                             TG__CASES(cases)};

tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, add, NULL, a, b);
}
