/* ops/mul.c: c = a * b elementwise; da += g * b, db += g * a. */
#include "../src/internal.h"

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

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_mul(t, in[0], in[1]);
}

static const tg_opcase cases[] = {
    {.ndim = {1, 1}, .shape = {{5}, {5}}},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}},
    {.ndim = {3, 3}, .shape = {{2, 2, 3}, {2, 2, 3}}},
};

const tg_opdef tg__op_mul = {"mul", 2, backward, call, cases, 3};

tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
  tg_tensor *in[2] = {a, b};
  if (!a || !b) return NULL;
  if (tg__check_inputs("tg_mul", t, in, 2) ||
      tg__check_float("tg_mul", a, "a") || tg__check_float("tg_mul", b, "b") ||
      tg__check_same("tg_mul", a, b))
    return NULL;
  tg_tensor *c = tg__emit(t, &tg__op_mul, a->dtype, a->ndim, a->shape, in, 2);
  if (!c) return NULL;
  if (a->dtype == TG_F32)
    mul_f32(a->data, b->data, c->data, a->numel);
  else
    mul_f64(a->data, b->data, c->data, a->numel);
  return tg__done(t, c, "tg_mul");
}
