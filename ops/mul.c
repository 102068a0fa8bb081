/* ops/mul.c: c = a * b elementwise; da += g * b, db += g * a. */
#include "op.h"

#define KERNELS(T, S)                                                       \
  static void mul_##S(const T *restrict a, const T *restrict b,             \
                      T *restrict c, int64_t n) {                           \
    for (int64_t i = 0; i < n; i++) c[i] = a[i] * b[i];                     \
  }                                                                         \
  static void mul_acc_##S(const T *restrict g, const T *restrict x,         \
                          T *restrict d, int64_t n) {                       \
    for (int64_t i = 0; i < n; i++) d[i] += g[i] * x[i];                    \
  }
TG__BOTH(KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *a = n->in[0], *b = n->in[1];
  if (a->dtype == TG_F32)
    mul_f32(a->data, b->data, n->out->data, a->numel);
  else
    mul_f64(a->data, b->data, n->out->data, a->numel);
  return TG_OK;
}

static void backward(const tg_node *n) {
  const tg_tensor *c = n->out;
  for (int i = 0; i < 2; i++) {
    void *d = tg__gin(n, i);
    if (!d) continue;
    const void *other = n->in[1 - i]->data;
    if (c->dtype == TG_F32)
      mul_acc_f32(c->grad, other, d, c->numel);
    else
      mul_acc_f64(c->grad, other, d, c->numel);
  }
}

static const tg_opcase cases[] = {
    {.ndim = {1, 1}, .shape = {{5}, {5}}},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}},
    {.ndim = {3, 3}, .shape = {{2, 2, 3}, {2, 2, 3}}},
};

const tg_opdef tg__op_mul = {.name = "mul", .n_in = 2, .rule = tg__rule_same2,
                             .forward = forward, .backward = backward,
                             TG__CASES(cases)};

tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  return TG__APPLY(t, mul, NULL, a, b);
}
