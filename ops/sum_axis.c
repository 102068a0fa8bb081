/* ops/sum_axis.c: y = sum of x along one axis, which is removed (a 1-D x
 * gives a 0-d result). Viewing x as [outer, len, inner] around the axis, y is
 * [outer, inner] and dx[o, k, i] += g[o, i]. The axis is args i[0], made
 * non-negative by the rule. */
#include "op.h"

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

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96];
  const tg_tensor *x = in[0];
  int64_t ax = a->i[0] < 0 ? a->i[0] + x->ndim : a->i[0];
  if (ax < 0 || ax >= x->ndim)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for a of %s", fn,
                   (long long)a->i[0], tg__shape_str(x, sa));
  out->ndim = 0;
  for (int d = 0; d < x->ndim; d++)
    if (d != ax) out->shape[out->ndim++] = x->shape[d];
  return TG_OK;
}

static int axis_of(const tg_node *n) {
  int64_t ax = n->args.i[0];
  return (int)(ax < 0 ? ax + n->in[0]->ndim : ax);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *a = n->in[0];
  int64_t outer, len, inner;
  split(a, axis_of(n), &outer, &len, &inner);
  if (a->dtype == TG_F32)
    sum_axis_f32(a->data, n->out->data, outer, len, inner);
  else
    sum_axis_f64(a->data, n->out->data, outer, len, inner);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  int64_t outer, len, inner;
  split(n->in[0], axis_of(n), &outer, &len, &inner);
  if (n->out->dtype == TG_F32)
    sum_axis_bwd_f32(n->out->grad, dx, outer, len, inner);
  else
    sum_axis_bwd_f64(n->out->grad, dx, outer, len, inner);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{5}}, .args = {.i = {0}}},
    {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {0}}},
    {.ndim = {2}, .shape = {{3, 4}}, .args = {.i = {1}}},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {-2}}},
};

const tg_opdef tg__op_sum_axis = {.name = "sum_axis", .n_in = 1, .rule = rule,
                                  .forward = forward, .backward = backward,
                                  TG__CASES(cases)};

tg_tensor *tg_sum_axis(tg_tape *t, tg_tensor *a, int axis) {
  return TG__APPLY(t, sum_axis, &(tg_opargs){.i = {axis}}, a);
}
