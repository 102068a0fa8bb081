/* ops/oplist.c: the table of every op, built from ops/ops.def. */
#include "op.h"

const tg_opdef *const tg__ops[] = {
#define TG_OP(name) &tg__op_##name,
#include "ops.def"
#undef TG_OP
};
const int tg__n_ops = (int)(sizeof tg__ops / sizeof tg__ops[0]);
