/* ops/unary.h: the template every elementwise op is made from. Before
 * including it, define UNARY_NAME, FWD(x) (the value) and BWD(x, y, g) (the
 * gradient contribution to dx, given the input x, the output y and the
 * incoming gradient g), UNARY_DOMAIN for the generated tests, and
 * optionally UNARY_FWD_SIMD (below). With
 * <tgmath.h>, exp/log/tanh pick their float or double version. */
#include <tgmath.h>

#include "../src/internal.h"

#define U_CAT_(a, b) a##b
#define U_CAT(a, b) U_CAT_(a, b)
#define U_STR_(a) #a
#define U_STR(a) U_STR_(a)

/* UNARY_FWD_SIMD: which forward loops are straight-line arithmetic the
 * compiler can vectorise (TG__SIMD): 0 none (a libm call per element:
 * clang would warn that the request failed), 1 float only, 2 both. Every
 * BWD is plain arithmetic. */
#ifndef UNARY_FWD_SIMD
#define UNARY_FWD_SIMD 0
#endif
#if UNARY_FWD_SIMD >= 1
#define U_SIMD_f32 TG__SIMD
#else
#define U_SIMD_f32
#endif
#if UNARY_FWD_SIMD >= 2
#define U_SIMD_f64 TG__SIMD
#else
#define U_SIMD_f64
#endif

#define U_KERNELS(T, S)                                                     \
  static void U_CAT(fwd_, S)(const T *restrict xs, T *restrict ys,          \
                             int64_t n) {                                   \
    U_SIMD_##S                                                              \
    for (int64_t i = 0; i < n; i++) {                                       \
      T x = xs[i];                                                          \
      ys[i] = FWD(x);                                                       \
    }                                                                       \
  }                                                                         \
  static void U_CAT(bwd_, S)(const T *restrict xs, const T *restrict ys,    \
                             const T *restrict gs, T *restrict dx,          \
                             int64_t n) {                                   \
    TG__SIMD                                                                \
    for (int64_t i = 0; i < n; i++) {                                       \
      T x = xs[i], y = ys[i], g = gs[i];                                    \
      (void)x;                                                              \
      (void)y;                                                              \
      dx[i] += BWD(x, y, g);                                                \
    }                                                                       \
  }
TG__BOTH(U_KERNELS)

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  if (n->out->dtype == TG_F32)
    bwd_f32(n->in[0]->data, n->out->data, n->out->grad, dx, n->out->numel);
  else
    bwd_f64(n->in[0]->data, n->out->data, n->out->grad, dx, n->out->numel);
}

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return U_CAT(tg_, UNARY_NAME)(t, in[0]);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{7}}, .domain = {UNARY_DOMAIN}},
    {.ndim = {2}, .shape = {{3, 5}}, .domain = {UNARY_DOMAIN}},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .domain = {UNARY_DOMAIN}},
};

const tg_opdef U_CAT(tg__op_, UNARY_NAME) = {
    U_STR(UNARY_NAME), 1, backward, call, cases,
    (int)(sizeof cases / sizeof cases[0])};

tg_tensor *U_CAT(tg_, UNARY_NAME)(tg_tape *t, tg_tensor *a) {
  return tg__unary(t, a, &U_CAT(tg__op_, UNARY_NAME), fwd_f32, fwd_f64);
}
