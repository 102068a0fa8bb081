/* ops/sum.c: s = sum of all elements ([1]); dx += g everywhere. mean is
 * the same op scaled by 1/n, in ops/mean.c. */
#include "../src/internal.h"

/* Summed in double for both dtypes: float32 sums of many terms would
 * otherwise lose digits. */
#define KERNELS(T, S)                                                  \
  static double sum_##S(const T *x, int64_t n) {                       \
    double s = 0;                                                      \
    for (int64_t i = 0; i < n; i++) s += x[i];                         \
    return s;                                                          \
  }                                                                    \
  static void fill_acc_##S(T *restrict d, T g, int64_t n) {            \
    for (int64_t i = 0; i < n; i++) d[i] += g;                         \
  }
TG__BOTH(KERNELS)

/* Shared by sum and mean: out = k * sum(a). */
static tg_tensor *reduce(tg_tape *t, tg_tensor *a, const tg_opdef *op,
                         const char *fn, bool mean) {
  if (!a) return NULL;
  if (tg__check_inputs(fn, t, &a, 1) || tg__check_float(fn, a, "a"))
    return NULL;
  tg_tensor *y = tg__emit_scalar(t, op, a->dtype, &a, 1);
  if (!y) return NULL;
  double k = mean ? 1.0 / (double)a->numel : 1.0;
  if (a->dtype == TG_F32)
    *(float *)y->data = (float)(k * sum_f32(a->data, a->numel));
  else
    *(double *)y->data = k * sum_f64(a->data, a->numel);
  return tg__done(t, y, fn);
}

static void reduce_backward(const tg_node *n, double k) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  int64_t len = n->in[0]->numel;
  if (n->out->dtype == TG_F32)
    fill_acc_f32(dx, (float)(k * *(const float *)n->out->grad), len);
  else
    fill_acc_f64(dx, k * *(const double *)n->out->grad, len);
}

static void backward_sum(const tg_node *n) { reduce_backward(n, 1.0); }
static void backward_mean(const tg_node *n) {
  reduce_backward(n, 1.0 / (double)n->in[0]->numel);
}

static tg_tensor *call_sum(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_sum(t, in[0]);
}
static tg_tensor *call_mean(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_mean(t, in[0]);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{1}}},
    {.ndim = {2}, .shape = {{3, 4}}},
    {.ndim = {4}, .shape = {{2, 2, 2, 3}}},
};

const tg_opdef tg__op_sum = {"sum", 1, backward_sum, call_sum, cases, 3};
const tg_opdef tg__op_mean = {"mean", 1, backward_mean, call_mean, cases, 3};

tg_tensor *tg_sum(tg_tape *t, tg_tensor *a) {
  return reduce(t, a, &tg__op_sum, "tg_sum", false);
}
tg_tensor *tg_mean(tg_tape *t, tg_tensor *a) {
  return reduce(t, a, &tg__op_mean, "tg_mean", true);
}
