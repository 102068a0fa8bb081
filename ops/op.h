/* ops/op.h: the op interface, the one private header an op includes: the
 * engine's declaration of an op and its door, the kernels, and the pieces
 * ops share (ops/opsupport.c, ops/sparse.c). */
#ifndef TAPEGRAD_OP_H
#define TAPEGRAD_OP_H

#include "../src/engine/engine.h"
#include "../src/kernels/vmath.h"

/* opsupport.c: shape rules and checks shared by ops. Each returns TG_OK or
 * records a message naming fn and returns the error. */
/* The result has the shape and dtype of input 0. */
int tg__rule_same(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                  tg_outshape *out);
/* Inputs 0 and 1 have one shape; the result has it too. */
int tg__rule_same2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out);
/* A 0-d result, for reductions and losses. */
void tg__out_scalar(tg_outshape *out, tg_dtype dtype);
int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b);
int tg__check_2d(const char *fn, const tg_tensor *x, const char *what);
/* index must be int32 [N], values in [0, C), for a [N,C] (ops/pick.c). */
int tg__check_classes(const char *fn, const tg_tensor *a, const tg_tensor *index);
/* d[j] += sum over rows of g[r, j], g [rows, cols]: a bias's gradient. */
void tg__colsum_acc_f32(const float *restrict g, float *restrict d,
                        int64_t rows, int64_t cols);
void tg__colsum_acc_f64(const double *restrict g, double *restrict d,
                        int64_t rows, int64_t cols);

/* sparse.c: for an op whose left operand is a: a's sparse form in t's
 * arena when a is a caller-owned float32 [M,K] matrix (data, not an op's
 * result) that is mostly zeros; NULL otherwise, and the op runs the dense
 * product. by_col adds the by-column copy, which only the weight gradient
 * reads: ask for it when backward will need it. */
tg__sparse *tg__spmm_of(tg_tape *t, const tg_tensor *a, bool by_col);

/* oplist.c: every op, from ops/ops.def. */
#define TG_OP(name) extern const tg_opdef tg__op_##name;
#include "ops.def"
#undef TG_OP
extern const tg_opdef *const tg__ops[];
extern const int tg__n_ops;

/* A public constructor's body: applies op to the listed inputs. */
#define TG__APPLY(t, op, args, ...)                                         \
  tg__apply((t), &tg__op_##op, (tg_tensor *const[]){__VA_ARGS__}, (args))

#endif
