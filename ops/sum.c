/* ops/sum.c: s = sum of all elements (0-d); dx += g everywhere. mean is
 * the same op scaled by 1/n, in this file too. */
#include "op.h"

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

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)fn;
  (void)a;
  tg__out_scalar(out, in[0]->dtype);
  return TG_OK;
}

/* Shared by sum and mean: out = k * sum(a). */
static void reduce(tg_node *n, double k) {
  const tg_tensor *a = n->in[0];
  if (a->dtype == TG_F32)
    *(float *)n->out->data = (float)(k * sum_f32(a->data, a->numel));
  else
    *(double *)n->out->data = k * sum_f64(a->data, a->numel);
}

static int forward_sum(tg_tape *t, tg_node *n) {
  (void)t;
  reduce(n, 1.0);
  return TG_OK;
}
static int forward_mean(tg_tape *t, tg_node *n) {
  (void)t;
  reduce(n, 1.0 / (double)n->in[0]->numel);
  return TG_OK;
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

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{1}}},
    {.ndim = {2}, .shape = {{3, 4}}},
    {.ndim = {4}, .shape = {{2, 2, 2, 3}}},
};

const tg_opdef tg__op_sum = {.name = "sum", .n_in = 1, .rule = rule,
                             .forward = forward_sum, .backward = backward_sum,
                             TG__CASES(cases)};
const tg_opdef tg__op_mean = {.name = "mean", .n_in = 1, .rule = rule,
                              .forward = forward_mean,
                              .backward = backward_mean, TG__CASES(cases)};

tg_tensor *tg_sum(tg_tape *t, tg_tensor *a) { return TG__APPLY(t, sum, NULL, a); }
tg_tensor *tg_mean(tg_tape *t, tg_tensor *a) { return TG__APPLY(t, mean, NULL, a); }
