/* ops/sigmoid_bce.c: fused sigmoid + binary cross-entropy, summed over the C
 * outputs and averaged over the N rows of logits z[N,C]:
 *   L = -(1/N) sum [y ln a + (1-y) ln(1-a)],  a = sigmoid(z)
 *     =  (1/N) sum [max(z,0) - y z + ln(1 + e^-|z|)]
 * The second form never takes the log of 0, so any finite z gives a finite
 * loss. Forward saves a; backward:
 *   dL/dz = (a - y) / N,   dL/dy = -z / N. */
#include <tgmath.h>

#include "op.h"

#define KERNELS(T, S)                                                        \
  static double forward_##S(const T *restrict z, const T *restrict y,        \
                            T *restrict a, int64_t n) {                      \
    double total = 0;                                                        \
    for (int64_t i = 0; i < n; i++) {                                        \
      T zi = z[i], e = exp(-fabs(zi));                                       \
      a[i] = zi >= 0 ? 1 / (1 + e) : e / (1 + e);                            \
      total += (double)((zi > 0 ? zi : 0) - y[i] * zi + log1p(e));           \
    }                                                                        \
    return total;                                                            \
  }                                                                          \
  static void backward_##S(const T *restrict a, const T *restrict z,         \
                           const T *restrict y, T *dz, T *dy, T g,           \
                           int64_t n) {                                      \
    if (dz)                                                                  \
      for (int64_t i = 0; i < n; i++) dz[i] += g * (a[i] - y[i]);            \
    if (dy)                                                                  \
      for (int64_t i = 0; i < n; i++) dy[i] -= g * z[i];                     \
  }
TG__BOTH(KERNELS)

static void backward(const tg_node *n) {
  const tg_tensor *z = n->in[0], *y = n->in[1];
  double g = (z->dtype == TG_F32 ? *(const float *)n->out->grad
                                 : *(const double *)n->out->grad) /
             (double)z->shape[0];
  if (z->dtype == TG_F32)
    backward_f32(n->saved, z->data, y->data, tg__gin(n, 0), tg__gin(n, 1),
                 (float)g, z->numel);
  else
    backward_f64(n->saved, z->data, y->data, tg__gin(n, 0), tg__gin(n, 1), g,
                 z->numel);
}

/* Logits and target: one 2-D shape. */
static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  tg__out_scalar(out, in[0]->dtype);
  int rc = tg__check_2d(fn, in[0], "logits");
  return rc ? rc : tg__check_same(fn, in[0], in[1]);
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *logits = n->in[0], *target = n->in[1];
  void *a = tg__arena_alloc(t, (size_t)logits->numel * tg__dtype_size(logits->dtype));
  if (!a) return tg__err(TG_ENOMEM, "tg_sigmoid_bce: out of memory");
  double rows = (double)logits->shape[0];
  if (logits->dtype == TG_F32)
    *(float *)n->out->data =
        (float)(forward_f32(logits->data, target->data, a, logits->numel) / rows);
  else
    *(double *)n->out->data =
        forward_f64(logits->data, target->data, a, logits->numel) / rows;
  n->saved = a;
  return TG_OK;
}

static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{4, 3}, {4, 3}}, .domain = {0, TG__DOM_UNIT}},
    {.ndim = {2, 2}, .shape = {{1, 5}, {1, 5}}, .domain = {0, TG__DOM_UNIT}},
};

const tg_opdef tg__op_sigmoid_bce = {
    .name = "sigmoid_bce", .n_in = 2, .in_names = {"logits", "target"},
    .rule = rule, .forward = forward, .backward = backward, TG__CASES(cases)};

tg_tensor *tg_sigmoid_bce(tg_tape *t, tg_tensor *logits, tg_tensor *target) {
  return TG__APPLY(t, sigmoid_bce, NULL, logits, target);
}
