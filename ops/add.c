/* ops/add.c: c = a + b for equal shapes (da += g, db += g), and the bias
 * form c[N,C] = a[N,C] + b[C] (db += column sums of g). tg_add picks the
 * form from the shapes; each is its own op in the list. */
#include "../src/internal.h"

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

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_add(t, in[0], in[1]);
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

const tg_opdef tg__op_add = {"add", 2, backward, call, cases, 3};
const tg_opdef tg__op_add_bias = {"add_bias", 2, backward_bias, call,
                                  cases_bias, 2};

tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  tg_tensor *in[2] = {a, b};
  char sa[96], sb[96];
  if (!a || !b) return NULL;
  if (tg__check_inputs("tg_add", t, in, 2) ||
      tg__check_float("tg_add", a, "a") || tg__check_float("tg_add", b, "b"))
    return NULL;
  if (a->dtype != b->dtype) {
    tg__err(TG_EDTYPE, "tg_add: dtypes differ: a is %s, b is %s",
            tg_dtype_name(a->dtype), tg_dtype_name(b->dtype));
    return NULL;
  }
  bool bias = a->ndim == 2 && b->ndim == 1 && b->shape[0] == a->shape[1];
  if (!bias && !tg__same_shape(a, b)) {
    tg__err(TG_ESHAPE,
            "tg_add: shapes differ: a is %s, b is %s (b must be a's shape, or "
            "[C] for a of [N,C])", tg__shape_str(a, sa), tg__shape_str(b, sb));
    return NULL;
  }
  tg_tensor *c = tg__emit(t, bias ? &tg__op_add_bias : &tg__op_add, a->dtype,
                          a->ndim, a->shape, in, 2);
  if (!c) return NULL;
  int64_t rows = bias ? a->shape[0] : 1, cols = bias ? a->shape[1] : a->numel;
  if (a->dtype == TG_F32)
    add_f32(a->data, b->data, c->data, rows, cols, bias ? 0 : cols);
  else
    add_f64(a->data, b->data, c->data, rows, cols, bias ? 0 : cols);
  return tg__done(t, c, "tg_add");
}
