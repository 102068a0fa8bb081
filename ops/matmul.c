/* ops/matmul.c: c[M,N] = a[M,K] . b[K,N].
 * Backward: da += dc . b^T (NT product), db += a^T . dc (TN product); the
 * transposes are never materialised. A float a given by the caller (data,
 * not an op's result) that is mostly zeros goes through the sparse product
 * of src/spmm.c, its non-zeros kept for backward. */
#include "../src/internal.h"

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

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_matmul(t, in[0], in[1]);
}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{3, 4}, {4, 5}}},
    {.ndim = {2, 2}, .shape = {{1, 6}, {6, 1}}},
    {.ndim = {2, 2}, .shape = {{5, 1}, {1, 3}}},
};

const tg_opdef tg__op_matmul = {"matmul", 2, backward, call, cases, 3};

tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  tg_tensor *in[2] = {a, b};
  char sa[96], sb[96];
  if (!a || !b) return NULL;
  if (tg__check_inputs("tg_matmul", t, in, 2) ||
      tg__check_float("tg_matmul", a, "a") ||
      tg__check_float("tg_matmul", b, "b"))
    return NULL;
  if (a->dtype != b->dtype) {
    tg__err(TG_EDTYPE, "tg_matmul: dtypes differ: a is %s, b is %s",
            tg_dtype_name(a->dtype), tg_dtype_name(b->dtype));
    return NULL;
  }
  if (a->ndim != 2 || b->ndim != 2) {
    tg__err(TG_ESHAPE, "tg_matmul: both inputs must be 2-D: a is %s, b is %s",
            tg__shape_str(a, sa), tg__shape_str(b, sb));
    return NULL;
  }
  if (a->shape[1] != b->shape[0]) {
    tg__err(TG_ESHAPE, "tg_matmul: inner dimensions differ: a is %s, b is %s",
            tg__shape_str(a, sa), tg__shape_str(b, sb));
    return NULL;
  }
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  const int64_t shape[2] = {M, N};
  tg_tensor *c = tg__emit(t, &tg__op_matmul, a->dtype, 2, shape, in, 2);
  if (!c) return NULL;
  /* The by-column copy of a only when backward will need it: c recorded,
   * b needing a gradient. */
  tg_node *nd = tg__node_of(c);
  bool by_col = nd && (b->flags & TG__NEEDS_GRAD);
  tg__sparse *sp = tg__spmm_of(t, a, by_col);
  if (nd && by_col) nd->saved = sp;
  if (sp)
    tg__spmm_f32(sp, b->data, NULL, N, c->data);
  else if (a->dtype == TG_F32)
    tg__sgemm(false, false, M, N, K, 1, a->data, K, b->data, N, 0, c->data, N);
  else
    tg__dgemm(false, false, M, N, K, 1, a->data, K, b->data, N, 0, c->data, N);
  return tg__done(t, c, "tg_matmul");
}
