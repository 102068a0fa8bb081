/* ops/quadratic.c: the quadratic cost on activations a[N,C]:
 *   L = (1/2N) sum_i ||y_i - a_i||^2;  dL/da = (a - y)/N,  dL/dy = (y - a)/N. */
#include "../src/internal.h"

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

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_quadratic(t, in[0], in[1]);
}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{4, 3}, {4, 3}}, .domain = {TG__DOM_UNIT, TG__DOM_UNIT}},
    {.ndim = {2, 2}, .shape = {{1, 10}, {1, 10}}, .domain = {TG__DOM_UNIT, TG__DOM_UNIT}},
};

const tg_opdef tg__op_quadratic = {"quadratic", 2, backward, call, cases, 2};

tg_tensor *tg_quadratic(tg_tape *t, tg_tensor *a, tg_tensor *target) {
  static const char fn[] = "tg_quadratic";
  tg_tensor *in[2] = {a, target};
  if (!a || !target) return NULL;
  if (tg__check_inputs(fn, t, in, 2) || tg__check_float(fn, a, "a") ||
      tg__check_2d(fn, a, "a") || tg__check_same(fn, a, target))
    return NULL;
  tg_tensor *out = tg__emit_scalar(t, &tg__op_quadratic, a->dtype, in, 2);
  if (!out) return NULL;
  double k = 0.5 / (double)a->shape[0];
  if (a->dtype == TG_F32)
    *(float *)out->data = (float)(k * forward_f32(a->data, target->data, a->numel));
  else
    *(double *)out->data = k * forward_f64(a->data, target->data, a->numel);
  return tg__done(t, out, fn);
}
