/* ops/scale.c: y = c * x for a constant c; dx = c * g. */
#include "../src/internal.h"

#define KERNELS(T, S)                                                     \
  static void scale_##S(const T *restrict x, T *restrict y, T c,          \
                        int64_t n) {                                      \
    for (int64_t i = 0; i < n; i++) y[i] = c * x[i];                      \
  }                                                                       \
  static void scale_acc_##S(const T *restrict g, T *restrict dx, T c,     \
                            int64_t n) {                                  \
    for (int64_t i = 0; i < n; i++) dx[i] += c * g[i];                    \
  }
TG__BOTH(KERNELS)

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  if (n->out->dtype == TG_F32)
    scale_acc_f32(n->out->grad, dx, (float)n->f, n->out->numel);
  else
    scale_acc_f64(n->out->grad, dx, n->f, n->out->numel);
}

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  return tg_scale(t, in[0], c->f);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{5}}, .f = -2.5},
    {.ndim = {2}, .shape = {{4, 3}}, .f = 0.125},
};

const tg_opdef tg__op_scale = {"scale", 1, backward, call, cases, 2};

tg_tensor *tg_scale(tg_tape *t, tg_tensor *a, double c) {
  if (!a) return NULL;
  if (tg__check_inputs("tg_scale", t, &a, 1) ||
      tg__check_float("tg_scale", a, "a"))
    return NULL;
  if (c != c) {
    tg__err(TG_EINVAL, "tg_scale: the constant is NaN");
    return NULL;
  }
  tg_tensor *y = tg__emit(t, &tg__op_scale, a->dtype, a->ndim, a->shape, &a, 1);
  if (!y) return NULL;
  if (a->dtype == TG_F32)
    scale_f32(a->data, y->data, (float)c, a->numel);
  else
    scale_f64(a->data, y->data, c, a->numel);
  tg_node *nd = tg__node_of(y);
  if (nd) nd->f = c;
  return tg__done(t, y, "tg_scale");
}
