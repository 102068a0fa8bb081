/* ops/add.c: c = a + b for equal shapes (da += g, db += g), and the bias
 * form c[N,C] = a[N,C] + b[C] (db += column sums of g). tg_add picks the
 * form from the shapes; each is its own op in the list. */
#include "op.h"

#define KERNELS(T, S)                                                        \
  static void add_##S(const T *restrict a, const T *restrict b,              \
                      T *restrict c, int64_t rows, int64_t cols,             \
                      int64_t bstride) {                                     \
    for (int64_t r = 0; r < rows; r++) {                                     \
      TG__SIMD                                                               \
      for (int64_t j = 0; j < cols; j++)                                     \
        c[r * cols + j] = a[r * cols + j] + b[r * bstride + j];              \
    }                                                                        \
  }                                                                          \
  static void acc_##S(const T *restrict g, T *restrict d, int64_t n) {       \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) d[i] += g[i];                            \
  }
TG__BOTH(KERNELS)

static void backward(const tg_node *n) {
  const tg_tensor *c = n->out;
  for (int i = 0; i < 2; i++) {
    void *d = tg__gin(n, i);
    if (!d) continue;
    if (c->dtype == TG_F32)
      acc_f32(c->grad, d, c->numel);
    else
      acc_f64(c->grad, d, c->numel);
  }
}

static void backward_bias(const tg_node *n) {
  const tg_tensor *c = n->out;
  void *da = tg__gin(n, 0), *db = tg__gin(n, 1);
  int64_t rows = c->shape[0], cols = c->shape[1];
  if (c->dtype == TG_F32) {
    if (da) acc_f32(c->grad, da, c->numel);
    if (db) tg__colsum_acc_f32(c->grad, db, rows, cols);
  } else {
    if (da) acc_f64(c->grad, da, c->numel);
    if (db) tg__colsum_acc_f64(c->grad, db, rows, cols);
  }
}

static bool is_bias(const tg_tensor *a, const tg_tensor *b) {
  return a->ndim == 2 && b->ndim == 1 && b->shape[0] == a->shape[1];
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *args,
                tg_outshape *out) {
  char sa[96], sb[96];
  if (!is_bias(in[0], in[1]) && !tg__same_shape(in[0], in[1]))
    return tg__err(TG_ESHAPE,
                   "%s: shapes differ: a is %s, b is %s (b must be a's shape, or "
                   "[C] for a of [N,C])", fn, tg__shape_str(in[0], sa),
                   tg__shape_str(in[1], sb));
  return tg__rule_same(fn, in, args, out);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *a = n->in[0], *b = n->in[1];
  bool bias = is_bias(a, b);
  int64_t rows = bias ? a->shape[0] : 1, cols = bias ? a->shape[1] : a->numel;
  if (a->dtype == TG_F32)
    add_f32(a->data, b->data, n->out->data, rows, cols, bias ? 0 : cols);
  else
    add_f64(a->data, b->data, n->out->data, rows, cols, bias ? 0 : cols);
  return TG_OK;
}

static const tg_opcase cases[] = {
    {.ndim = {1, 1}, .shape = {{6}, {6}}},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}},
    {.ndim = {4, 4}, .shape = {{2, 1, 3, 2}, {2, 1, 3, 2}}},
};
static const tg_opcase cases_bias[] = {
    {.ndim = {2, 1}, .shape = {{4, 3}, {3}}},
    {.ndim = {2, 1}, .shape = {{1, 5}, {5}}},
};

const tg_opdef tg__op_add = {.name = "add", .n_in = 2, .rule = rule,
                             .forward = forward, .backward = backward,
                             TG__CASES(cases)};
const tg_opdef tg__op_add_bias = {.name = "add_bias", .api = "tg_add",
                                  .n_in = 2, .rule = rule, .forward = forward,
                                  .backward = backward_bias,
                                  TG__CASES(cases_bias)};

tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  bool bias = a && b && is_bias(a, b);
  return tg__apply(t, bias ? &tg__op_add_bias : &tg__op_add,
                   (tg_tensor *const[]){a, b}, NULL);
}
