/* ops/sum_axis.c: y = sum of x along one axis, which is removed (a 1-D x
 * gives [1]). Viewing x as [outer, len, inner] around the axis, y is
 * [outer, inner] and dx[o, k, i] += g[o, i]. */
#include "../src/internal.h"

#define KERNELS(T, S)                                                        \
  static void sum_axis_##S(const T *restrict x, T *restrict y, int64_t outer, \
                           int64_t len, int64_t inner) {                     \
    for (int64_t o = 0; o < outer; o++) {                                    \
      T *yo = y + o * inner;                                                 \
      for (int64_t i = 0; i < inner; i++) yo[i] = 0;                         \
      for (int64_t k = 0; k < len; k++) {                                    \
        const T *xk = x + (o * len + k) * inner;                             \
        for (int64_t i = 0; i < inner; i++) yo[i] += xk[i];                  \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  static void sum_axis_bwd_##S(const T *restrict g, T *restrict dx,          \
                               int64_t outer, int64_t len, int64_t inner) {  \
    for (int64_t o = 0; o < outer; o++)                                      \
      for (int64_t k = 0; k < len; k++) {                                    \
        T *dk = dx + (o * len + k) * inner;                                  \
        for (int64_t i = 0; i < inner; i++) dk[i] += g[o * inner + i];       \
      }                                                                      \
  }
TG__BOTH(KERNELS)

static void split(const tg_tensor *x, int axis, int64_t *outer, int64_t *len,
                  int64_t *inner) {
  *outer = *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= x->shape[d];
  *len = x->shape[axis];
  for (int d = axis + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  int64_t outer, len, inner;
  split(n->in[0], (int)n->i, &outer, &len, &inner);
  if (n->out->dtype == TG_F32)
    sum_axis_bwd_f32(n->out->grad, dx, outer, len, inner);
  else
    sum_axis_bwd_f64(n->out->grad, dx, outer, len, inner);
}

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  return tg_sum_axis(t, in[0], (int)c->i);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{5}}, .i = 0},
    {.ndim = {2}, .shape = {{3, 4}}, .i = 0},
    {.ndim = {2}, .shape = {{3, 4}}, .i = 1},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .i = -2},
};

const tg_opdef tg__op_sum_axis = {"sum_axis", 1, backward, call, cases, 4};

tg_tensor *tg_sum_axis(tg_tape *t, tg_tensor *a, int axis) {
  char sa[96];
  if (!a) return NULL;
  if (tg__check_inputs("tg_sum_axis", t, &a, 1) ||
      tg__check_float("tg_sum_axis", a, "a"))
    return NULL;
  int ax = axis < 0 ? axis + a->ndim : axis;
  if (ax < 0 || ax >= a->ndim) {
    tg__err(TG_ERANGE, "tg_sum_axis: axis %d is out of range for a of %s", axis,
            tg__shape_str(a, sa));
    return NULL;
  }
  int64_t shape[TG_MAX_DIMS] = {1};
  int nd = 0;
  for (int d = 0; d < a->ndim; d++)
    if (d != ax) shape[nd++] = a->shape[d];
  tg_tensor *y = tg__emit(t, &tg__op_sum_axis, a->dtype, nd ? nd : 1, shape, &a, 1);
  if (!y) return NULL;
  tg_node *node = tg__node_of(y);
  if (node) node->i = ax;
  int64_t outer, len, inner;
  split(a, ax, &outer, &len, &inner);
  if (a->dtype == TG_F32)
    sum_axis_f32(a->data, y->data, outer, len, inner);
  else
    sum_axis_f64(a->data, y->data, outer, len, inner);
  return tg__done(t, y, "tg_sum_axis");
}
