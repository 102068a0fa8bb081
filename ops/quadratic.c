/* ops/quadratic.c: the quadratic cost on activations a[N,C]:
 *   L = (1/2N) sum_i ||y_i - a_i||^2;  dL/da = (a - y)/N,  dL/dy = (y - a)/N. */
#include "op.h"

#define KERNELS(T, S)                                                        \
  static double forward_##S(const T *restrict a, const T *restrict y,        \
                            int64_t n) {                                     \
    double total = 0;                                                        \
    for (int64_t i = 0; i < n; i++) {                                        \
      double d = (double)a[i] - (double)y[i];                                \
      total += d * d;                                                        \
    }                                                                        \
    return total;                                                            \
  }                                                                          \
  static void backward_##S(const T *restrict a, const T *restrict y, T *da,  \
                           T *dy, T g, int64_t n) {                          \
    for (int64_t i = 0; i < n; i++) {                                        \
      T d = g * (a[i] - y[i]);                                               \
      if (da) da[i] += d;                                                    \
      if (dy) dy[i] -= d;                                                    \
    }                                                                        \
  }
TG__BOTH(KERNELS)

static void backward(const tg_node *n) {
  const tg_tensor *a = n->in[0], *y = n->in[1];
  double g = (a->dtype == TG_F32 ? *(const float *)n->out->grad
                                 : *(const double *)n->out->grad) /
             (double)a->shape[0];
  if (a->dtype == TG_F32)
    backward_f32(a->data, y->data, tg__gin(n, 0), tg__gin(n, 1), (float)g, a->numel);
  else
    backward_f64(a->data, y->data, tg__gin(n, 0), tg__gin(n, 1), g, a->numel);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  tg__out_scalar(out, in[0]->dtype);
  int rc = tg__check_2d(fn, in[0], "a");
  return rc ? rc : tg__check_same(fn, in[0], in[1]);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *a = n->in[0], *target = n->in[1];
  double k = 0.5 / (double)a->shape[0];
  if (a->dtype == TG_F32)
    *(float *)n->out->data = (float)(k * forward_f32(a->data, target->data, a->numel));
  else
    *(double *)n->out->data = k * forward_f64(a->data, target->data, a->numel);
  return TG_OK;
}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{4, 3}, {4, 3}}, .domain = {TG__DOM_UNIT, TG__DOM_UNIT}},
    {.ndim = {2, 2}, .shape = {{1, 10}, {1, 10}}, .domain = {TG__DOM_UNIT, TG__DOM_UNIT}},
};

const tg_opdef tg__op_quadratic = {
    .name = "quadratic", .n_in = 2, .in_names = {"a", "target"}, .rule = rule,
    .forward = forward, .backward = backward, TG__CASES(cases)};

tg_tensor *tg_quadratic(tg_tape *t, tg_tensor *a, tg_tensor *target) {
  return TG__APPLY(t, quadratic, NULL, a, target);
}
