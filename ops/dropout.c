/* ops/dropout.c: inverted dropout while training,
 *   y = a * m / (1-p),  m ~ Bernoulli(1-p) per element,
 * backward dx += g * m / (1-p), with the mask forward drew. Not training,
 * or p = 0, tg_dropout returns a itself and records nothing.
 *
 * The generator: args.ptr, a tg_rng the caller owns and advances, when
 * args.i[2] is 1 (tg_dropout's form). With i[2] = 0 (the deterministic
 * form) a generator of the op's own is seeded from i[0] at every forward,
 * so every call with the same arguments draws the same mask: that is the
 * form the op list's cases use, as a gradient check calls forward many
 * times and needs one function of a. args f[0] = p.
 *
 * An element is kept when a 32-bit uniform draw is at least p * 2^32
 * (rounded): each 64-bit draw of the generator gives two elements, and p
 * is resolved to 2^-32. */
#include <math.h>

#include "op.h"

static int check_p(const char *fn, double p) {
  if (!(p >= 0 && p < 1))
    return tg__err(TG_EINVAL, "%s: p is %g; it must be in [0, 1)", fn, p);
  return TG_OK;
}

/* mask[i] = 0 or 1/(1-p), two elements per draw. */
#define KERNELS(T, S)                                                        \
  static void draw_##S(tg_rng *rng, double p, T *restrict mask, int64_t n) { \
    uint64_t thr = (uint64_t)llround(p * 4294967296.0);                      \
    T keep = (T)(1 / (1 - p));                                               \
    for (int64_t i = 0; i < n; i += 2) {                                     \
      uint64_t r = tg_rng_next(rng);                                         \
      mask[i] = (r & 0xffffffffu) >= thr ? keep : 0;                         \
      if (i + 1 < n) mask[i + 1] = (r >> 32) >= thr ? keep : 0;              \
    }                                                                        \
  }                                                                          \
  static void mul_##S(const T *restrict x, const T *restrict m,              \
                      T *restrict y, int64_t n) {                            \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * m[i];                      \
  }                                                                          \
  /* y *= x, in place on a mask drawn into y */                              \
  static void mul_into_##S(const T *restrict x, T *restrict y, int64_t n) {  \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) y[i] *= x[i];                            \
  }                                                                          \
  static void mul_acc_##S(const T *restrict g, const T *restrict m,          \
                          T *restrict d, int64_t n) {                        \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) d[i] += g[i] * m[i];                     \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  int rc = check_p(fn, a->f[0]);
  if (rc) return rc;
  if (a->i[2] && !a->ptr)
    return tg__err(TG_EINVAL, "%s: rng is NULL; training needs a generator", fn);
  return tg__rule_same(fn, in, a, out);
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *x = n->in[0];
  tg_tensor *y = n->out;
  tg_rng own, *rng = n->args.ptr;
  if (!n->args.i[2]) {
    tg_rng_seed(&own, (uint64_t)n->args.i[0]);
    rng = &own;
  }
  /* The mask goes into y first, then y = x * mask in place; a recorded
   * node keeps it in the arena for backward. */
  size_t es = tg__dtype_size(x->dtype);
  void *mask = y->data;
  if (tg__recorded(n)) {
    if (!(mask = tg__arena_alloc(t, (size_t)x->numel * es + 1)))
      return tg__err(TG_ENOMEM, "tg_dropout: out of memory for the mask");
    n->saved = mask;
  }
  if (x->dtype == TG_F32) {
    draw_f32(rng, n->args.f[0], mask, x->numel);
    if (mask == y->data)
      mul_into_f32(x->data, y->data, x->numel);
    else
      mul_f32(x->data, mask, y->data, x->numel);
  } else {
    draw_f64(rng, n->args.f[0], mask, x->numel);
    if (mask == y->data)
      mul_into_f64(x->data, y->data, x->numel);
    else
      mul_f64(x->data, mask, y->data, x->numel);
  }
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  if (n->out->dtype == TG_F32)
    mul_acc_f32(n->out->grad, n->saved, dx, n->out->numel);
  else
    mul_acc_f64(n->out->grad, n->saved, dx, n->out->numel);
}

/* The deterministic form: i[0] the seed, i[2] = 0. */
#define CASE(p, seed, nd, ...)                                               \
  {.ndim = {nd}, .shape = {{__VA_ARGS__}}, .args = {.f = {p}, .i = {seed}}}
static const tg_opcase cases[] = {
    CASE(0.5, 7, 1, 9),
    CASE(0.5, 8, 2, 3, 5),
    CASE(0.25, 9, 3, 2, 3, 4),
    CASE(0.9, 10, 4, 2, 1, 3, 2),
    CASE(0.5, 11, 0, 0),
    CASE(0.0, 12, 2, 1, 1),
    {.ndim = {1}, .shape = {{4}}, .args = {.f = {-0.1}}, .status = TG_EINVAL,
     .msg = "p is -0.1"},
    {.ndim = {1}, .shape = {{4}}, .args = {.f = {1.0}}, .status = TG_EINVAL,
     .msg = "p is 1"},
    {.ndim = {1}, .shape = {{4}}, .args = {.f = {NAN}}, .status = TG_EINVAL,
     .msg = "p is nan"},
    {.ndim = {1}, .shape = {{4}}, .args = {.f = {0.5}, .i = {0, 1, 1}},
     .status = TG_EINVAL, .msg = "rng is NULL"},
};

const tg_opdef tg__op_dropout = {.name = "dropout", .n_in = 1, .rule = rule,
                                 .forward = forward, .backward = backward,
                                 TG__CASES(cases)};

tg_tensor *tg_dropout(tg_tape *t, tg_tensor *a, double p, tg_rng *rng,
                      bool training) {
  /* A bad p is refused in either mode: it goes to the op, whose rule
   * says so. */
  if ((!training || p == 0) && p >= 0 && p < 1) return a;
  tg_opargs args = {.f = {p}, .i = {0, 1, 1}, .ptr = rng};
  return TG__APPLY(t, dropout, &args, a);
}
