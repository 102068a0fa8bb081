/* ops/pad.c: constant padding: y is a with before[d] elements of value
 * added in front of dimension d and after[d] behind it,
 * y.shape[d] = before[d] + a.shape[d] + after[d];
 * y[i + before] = a[i], every other y = value. Backward takes the interior:
 * da[i] += g[i + before]. Args: f[0] the value; i[d] holds dimension d's
 * pair as two 32-bit halves, before in the high one and after in the low
 * one (written when an op call had six integer slots; the packing still holds), so each pad is below
 * 2^31. */
#include "op.h"

/* A pair as the rule reads it back; negative halves stay negative, so the
 * rule sees and refuses them. */
#define TG__PADS(b, a) \
  ((int64_t)(((uint64_t)(uint32_t)(int32_t)(b) << 32) | (uint32_t)(int32_t)(a)))
static int64_t before_of(int64_t v) { return (int32_t)(uint32_t)((uint64_t)v >> 32); }
static int64_t after_of(int64_t v) { return (int32_t)(uint32_t)((uint64_t)v & 0xffffffffu); }

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96];
  const tg_tensor *x = in[0];
  out->ndim = x->ndim;
  for (int d = 0; d < x->ndim; d++) {
    int64_t b = before_of(a->i[d]), e = after_of(a->i[d]);
    if (b < 0 || e < 0)
      return tg__err(TG_EINVAL, "%s: %s[%d] is %lld for a of %s; pads must be "
                     ">= 0", fn, b < 0 ? "before" : "after", d,
                     (long long)(b < 0 ? b : e), tg__shape_str(x, sa));
    out->shape[d] = b + x->shape[d] + e;
  }
  return TG_OK;
}

/* a's shape and, per dimension, y's stride, padded in front to 4
 * dimensions; and the offset in y of a's first element. */
static int64_t walk(const tg_node *n, int64_t xs[4], int64_t st[4]) {
  const tg_tensor *x = n->in[0], *y = n->out;
  int off = 4 - x->ndim;
  int64_t s = 1, base = 0;
  for (int d = 3; d >= 0; d--) {
    int e = d - off;
    xs[d] = e >= 0 ? x->shape[e] : 1;
    st[d] = s;
    if (e >= 0) {
      base += before_of(n->args.i[e]) * s;
      s *= y->shape[e];
    }
  }
  return base;
}

#define KERNELS(T, S)                                                        \
  static void pad_##S(const T *restrict x, T *restrict y, int64_t ny, T v,  \
                      const int64_t xs[4], const int64_t st[4], int64_t b) { \
    TG__SIMD for (int64_t i = 0; i < ny; i++) y[i] = v;                     \
    int64_t k = 0;                                                           \
    for (int64_t i0 = 0; i0 < xs[0]; i0++)                                   \
      for (int64_t i1 = 0; i1 < xs[1]; i1++)                                 \
        for (int64_t i2 = 0; i2 < xs[2]; i2++) {                             \
          T *yr = y + b + i0 * st[0] + i1 * st[1] + i2 * st[2];              \
          TG__SIMD for (int64_t i3 = 0; i3 < xs[3]; i3++) yr[i3] = x[k + i3]; \
          k += xs[3];                                                        \
        }                                                                    \
  }                                                                          \
  static void pad_bwd_##S(const T *restrict g, T *restrict dx,              \
                          const int64_t xs[4], const int64_t st[4],         \
                          int64_t b) {                                       \
    int64_t k = 0;                                                           \
    for (int64_t i0 = 0; i0 < xs[0]; i0++)                                   \
      for (int64_t i1 = 0; i1 < xs[1]; i1++)                                 \
        for (int64_t i2 = 0; i2 < xs[2]; i2++) {                             \
          const T *gr = g + b + i0 * st[0] + i1 * st[1] + i2 * st[2];        \
          TG__SIMD for (int64_t i3 = 0; i3 < xs[3]; i3++) dx[k + i3] += gr[i3]; \
          k += xs[3];                                                        \
        }                                                                    \
  }
TG__BOTH(KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  int64_t xs[4], st[4], b = walk(n, xs, st);
  if (n->out->dtype == TG_F32)
    pad_f32(n->in[0]->data, n->out->data, n->out->numel, (float)n->args.f[0], xs, st, b);
  else
    pad_f64(n->in[0]->data, n->out->data, n->out->numel, n->args.f[0], xs, st, b);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (!da) return;
  int64_t xs[4], st[4], b = walk(n, xs, st);
  if (n->out->dtype == TG_F32)
    pad_bwd_f32(n->out->grad, da, xs, st, b);
  else
    pad_bwd_f64(n->out->grad, da, xs, st, b);
}

static const tg_opcase cases[] = {
    {.ndim = {2}, .shape = {{2, 3}}, .args = {.i = {TG__PADS(1, 2), TG__PADS(0, 1)}, .f = {0.5}}},
    {.ndim = {1}, .shape = {{4}}, .args = {.i = {TG__PADS(3, 0)}}},
    {.ndim = {3}, .shape = {{2, 1, 3}}, .args = {.i = {TG__PADS(0, 0), TG__PADS(2, 1), TG__PADS(1, 1)}, .f = {-1}}},
    {.ndim = {4}, .shape = {{1, 2, 2, 1}}, .args = {.i = {TG__PADS(1, 0), TG__PADS(0, 1), TG__PADS(1, 1), TG__PADS(2, 0)}}},
    {.ndim = {2}, .shape = {{3, 2}}, .args = {.i = {0, 0}}},
    {.ndim = {0}, .args = {.f = {3}}},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {.i = {TG__PADS(1, 1), TG__PADS(-1, 0)}},
     .status = TG_EINVAL, .msg = "before[1] is -1"},
    {.ndim = {1}, .shape = {{2}}, .args = {.i = {TG__PADS(0, -3)}},
     .status = TG_EINVAL, .msg = "after[0] is -3"},
};

const tg_opdef tg__op_pad = {.name = "pad", .n_in = 1, .rule = rule,
                             .forward = forward, .backward = backward,
                             TG__CASES(cases)};

tg_tensor *tg_pad(tg_tape *t, tg_tensor *a, const int64_t *before,
                  const int64_t *after, double value) {
  if (!a) return NULL; /* an earlier op failed: keep its message */
  if (a->ndim && (!before || !after)) {
    tg__err(TG_EINVAL, "tg_pad: before and after are required (one entry per "
            "dimension of a)");
    return NULL;
  }
  tg_opargs args = {.f = {value}};
  for (int d = 0; d < a->ndim; d++) {
    for (int k = 0; k < 2; k++) {
      int64_t v = k ? after[d] : before[d];
      if (v < 0 || v > INT32_MAX) {
        char sa[96];
        tg__err(v < 0 ? TG_EINVAL : TG_ESHAPE, "tg_pad: %s[%d] is %lld for a "
                "of %s; pads must be >= 0 and below 2^31", k ? "after" : "before",
                d, (long long)v, tg__shape_str(a, sa));
        return NULL;
      }
    }
    args.i[d] = TG__PADS(before[d], after[d]);
  }
  return TG__APPLY(t, pad, &args, a);
}
