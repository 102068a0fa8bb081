/* ops/matmul.c: c[M,N] = a[M,K] . b[K,N].
 * Backward: da += dc . b^T (NT product), db += a^T . dc (TN product); the
 * transposes are never materialised. A float a given by the caller (data,
 * not an op's result) that is mostly zeros goes through the sparse product
 * of src/kernels/spmm.c, its non-zeros kept for backward. */
#include "op.h"

static void backward(const tg_node *n) {
  const tg_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  void *da = tg__gin(n, 0), *db = tg__gin(n, 1);
  const tg__sparse *sa = n->saved;
  if (c->dtype == TG_F32) {
    if (da) tg__sgemm(false, true, M, K, N, 1, c->grad, N, b->data, N, 1, da, K);
    if (db && sa) tg__spmm_tn_f32(sa, c->grad, N, db);
    else if (db) tg__sgemm(true, false, K, N, M, 1, a->data, K, c->grad, N, 1, db, N);
  } else {
    if (da) tg__dgemm(false, true, M, K, N, 1, c->grad, N, b->data, N, 1, da, K);
    if (db) tg__dgemm(true, false, K, N, M, 1, a->data, K, c->grad, N, 1, db, N);
  }
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  const tg_tensor *x = in[0], *y = in[1];
  char sa[96], sb[96];
  if (x->ndim != 2 || y->ndim != 2)
    return tg__err(TG_ESHAPE, "%s: both inputs must be 2-D: a is %s, b is %s",
                   fn, tg__shape_str(x, sa), tg__shape_str(y, sb));
  if (x->shape[1] != y->shape[0])
    return tg__err(TG_ESHAPE, "%s: inner dimensions differ: a is %s, b is %s",
                   fn, tg__shape_str(x, sa), tg__shape_str(y, sb));
  out->ndim = 2;
  out->shape[0] = x->shape[0];
  out->shape[1] = y->shape[1];
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0], *b = n->in[1];
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  /* The by-column copy of a only when backward will need it: c recorded,
   * b needing a gradient. */
  bool by_col = tg__recorded(n) && (b->flags & TG__NEEDS_GRAD);
  tg__sparse *sp = tg__spmm_of(t, a, by_col);
  if (by_col) n->saved = sp;
  if (sp)
    tg__spmm_f32(sp, b->data, NULL, N, n->out->data);
  else if (a->dtype == TG_F32)
    tg__sgemm(false, false, M, N, K, 1, a->data, K, b->data, N, 0, n->out->data, N);
  else
    tg__dgemm(false, false, M, N, K, 1, a->data, K, b->data, N, 0, n->out->data, N);
  return TG_OK;
}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{3, 4}, {4, 5}}},
    {.ndim = {2, 2}, .shape = {{1, 6}, {6, 1}}},
    {.ndim = {2, 2}, .shape = {{5, 1}, {1, 3}}},
};

const tg_opdef tg__op_matmul = {.name = "matmul", .n_in = 2, .rule = rule,
                                .forward = forward, .backward = backward,
                                TG__CASES(cases)};

tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, matmul, NULL, a, b);
}
