/* ops/scale.c: y = c * x for a constant c (args f[0]); dx = c * g. */
#include "op.h"

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

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  if (a->f[0] != a->f[0]) return tg__err(TG_EINVAL, "%s: the constant is NaN", fn);
  return tg__rule_same(fn, in, a, out);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *x = n->in[0];
  if (x->dtype == TG_F32)
    scale_f32(x->data, n->out->data, (float)n->args.f[0], x->numel);
  else
    scale_f64(x->data, n->out->data, n->args.f[0], x->numel);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  if (n->out->dtype == TG_F32)
    scale_acc_f32(n->out->grad, dx, (float)n->args.f[0], n->out->numel);
  else
    scale_acc_f64(n->out->grad, dx, n->args.f[0], n->out->numel);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{5}}, .args = {.f = {-2.5}}},
    {.ndim = {2}, .shape = {{4, 3}}, .args = {.f = {0.125}}},
};

const tg_opdef tg__op_scale = {.name = "scale", .n_in = 1, .rule = rule,
                               .forward = forward, .backward = backward,
                               TG__CASES(cases)};

tg_tensor *tg_scale(tg_tape *t, tg_tensor *a, double c) {
  return TG__APPLY(t, scale, &(tg_opargs){.f = {c}}, a);
}
