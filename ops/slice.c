/* ops/slice.c: y = a[..., start:stop:step, ...] along one axis, with
 * Python's rules for start and stop (negative counts from the end, both
 * clamped to [0, len]) and step >= 1. Viewing a as [outer, len, inner]
 * around the axis, y[o, k, i] = a[o, start + k*step, i] for
 * k < ceil((stop - start) / step); backward scatters g back:
 * da[o, start + k*step, i] += g[o, k, i], other positions get nothing.
 * Two ops: slice_view when the selected elements are one contiguous run
 * (outer is 1 and step is 1, or one row is taken), a view into a's data;
 * slice, a copy, otherwise. tg_slice picks. Args: i[0] axis, i[1] start,
 * i[2] stop, i[3] step. */
#include <string.h>

#include "op.h"

typedef struct {
  int64_t outer, len, inner, start, step, size;
} span;

static int64_t clamp_end(int64_t v, int64_t len) {
  if (v < 0) v = v < -len ? 0 : v + len;
  return v > len ? len : v;
}

/* The slice in a's terms, and its axis made non-negative; -1 for a bad
 * axis, -2 for a bad step. Records nothing: tg_slice asks it first. */
static int locate(const tg_tensor *x, const tg_opargs *a, span *s) {
  int64_t ax = a->i[0] < 0 ? a->i[0] + x->ndim : a->i[0];
  if (ax < 0 || ax >= x->ndim) return -1;
  if (a->i[3] < 1) return -2;
  s->outer = s->inner = 1;
  for (int d = 0; d < ax; d++) s->outer *= x->shape[d];
  for (int d = (int)ax + 1; d < x->ndim; d++) s->inner *= x->shape[d];
  s->len = x->shape[ax];
  s->start = clamp_end(a->i[1], s->len);
  int64_t stop = clamp_end(a->i[2], s->len);
  s->step = a->i[3];
  s->size = stop > s->start ? 1 + (stop - s->start - 1) / s->step : 0;
  return (int)ax;
}

/* locate, with the message of a rule. */
static int resolve(const char *fn, const tg_tensor *x, const tg_opargs *a,
                   span *s, int *ax) {
  char sa[96];
  *ax = locate(x, a, s);
  if (*ax == -1)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for a of %s", fn,
                   (long long)a->i[0], tg__shape_str(x, sa));
  if (*ax == -2)
    return tg__err(TG_EINVAL, "%s: step is %lld; it must be >= 1", fn,
                   (long long)a->i[3]);
  return TG_OK;
}

static bool contiguous(const span *s) {
  return s->outer == 1 && (s->step == 1 || s->size <= 1);
}

static int shape_of(const tg_tensor *x, int ax, const span *s, tg_outshape *out) {
  out->ndim = x->ndim;
  memcpy(out->shape, x->shape, sizeof out->shape);
  out->shape[ax] = s->size;
  return TG_OK;
}

static int rule_copy(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                     tg_outshape *out) {
  span s;
  int ax, rc = resolve(fn, in[0], a, &s, &ax);
  return rc ? rc : shape_of(in[0], ax, &s, out);
}

static int rule_view(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                     tg_outshape *out) {
  span s;
  int ax, rc = resolve(fn, in[0], a, &s, &ax);
  if (rc) return rc;
  if (!contiguous(&s)) {
    char sa[96];
    return tg__err(TG_EINVAL, "%s: this slice of a of %s is not contiguous; it "
                   "cannot be a view", fn, tg__shape_str(in[0], sa));
  }
  return shape_of(in[0], ax, &s, out);
}

#define KERNELS(T, S)                                                        \
  static void slice_##S(const T *restrict x, T *restrict y, const span *s) { \
    for (int64_t o = 0; o < s->outer; o++)                                   \
      for (int64_t k = 0; k < s->size; k++) {                                \
        const T *xr = x + (o * s->len + s->start + k * s->step) * s->inner;  \
        T *yr = y + (o * s->size + k) * s->inner;                            \
        TG__SIMD for (int64_t i = 0; i < s->inner; i++) yr[i] = xr[i];       \
      }                                                                      \
  }                                                                          \
  static void slice_bwd_##S(const T *restrict g, T *restrict dx,            \
                            const span *s) {                                 \
    for (int64_t o = 0; o < s->outer; o++)                                   \
      for (int64_t k = 0; k < s->size; k++) {                                \
        T *dr = dx + (o * s->len + s->start + k * s->step) * s->inner;       \
        const T *gr = g + (o * s->size + k) * s->inner;                      \
        TG__SIMD for (int64_t i = 0; i < s->inner; i++) dr[i] += gr[i];      \
      }                                                                      \
  }
TG__BOTH(KERNELS)

/* The node's span; its arguments passed the rule already. */
static span span_of(const tg_node *n) {
  span s;
  locate(n->in[0], &n->args, &s);
  return s;
}

static int forward_copy(tg_tape *t, tg_node *n) {
  (void)t;
  span s = span_of(n);
  if (n->out->dtype == TG_F32)
    slice_f32(n->in[0]->data, n->out->data, &s);
  else
    slice_f64(n->in[0]->data, n->out->data, &s);
  return TG_OK;
}

static int forward_view(tg_tape *t, tg_node *n) {
  (void)t;
  span s = span_of(n);
  size_t es = tg__dtype_size(n->out->dtype);
  n->out->data = (char *)n->in[0]->data + (size_t)(s.start * s.inner) * es;
  return TG_OK;
}

/* Both ops: a view is the copy's special case with outer 1. */
static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (!da) return;
  span s = span_of(n);
  if (n->out->dtype == TG_F32)
    slice_bwd_f32(n->out->grad, da, &s);
  else
    slice_bwd_f64(n->out->grad, da, &s);
}

#define SL(axis, start, stop, step) .args = {.i = {axis, start, stop, step}}
static const tg_opcase copy_cases[] = {
    {.ndim = {2}, .shape = {{4, 5}}, SL(1, 1, 4, 1)},
    {.ndim = {2}, .shape = {{4, 5}}, SL(-1, -4, 100, 2)},
    {.ndim = {3}, .shape = {{2, 6, 3}}, SL(1, 4, 100, 1)}, /* stop clamped */
    {.ndim = {1}, .shape = {{7}}, SL(0, 0, 7, 3)},
    {.ndim = {4}, .shape = {{2, 1, 4, 2}}, SL(2, -3, -1, 1)},
    {.ndim = {2}, .shape = {{3, 1}}, SL(0, 0, 3, 2)},
    {.ndim = {2}, .shape = {{4, 5}}, SL(2, 0, 1, 1), .status = TG_ERANGE,
     .msg = "axis 2 is out of range for a of [4,5]"},
    {.ndim = {0}, SL(0, 0, 1, 1), .status = TG_ERANGE, .msg = "axis 0"},
    {.ndim = {2}, .shape = {{4, 5}}, SL(0, 0, 4, 0), .status = TG_EINVAL,
     .msg = "step is 0"},
    {.ndim = {2}, .shape = {{4, 5}}, SL(0, 4, 0, -1), .status = TG_EINVAL,
     .msg = "step is -1"},
};

static const tg_opcase view_cases[] = {
    {.ndim = {2}, .shape = {{5, 3}}, SL(0, 1, 4, 1)},
    {.ndim = {3}, .shape = {{1, 6, 2}}, SL(-2, -5, -1, 1)},
    {.ndim = {3}, .shape = {{1, 1, 6}}, SL(2, 2, 6, 1)},
    {.ndim = {2}, .shape = {{4, 3}}, SL(0, 2, 4, 7)}, /* one row: contiguous */
    {.ndim = {1}, .shape = {{6}}, SL(0, -100, 100, 1)},
    {.ndim = {2}, .shape = {{4, 5}}, SL(1, 1, 4, 1), .status = TG_EINVAL,
     .msg = "not contiguous"},
    {.ndim = {2}, .shape = {{4, 5}}, SL(-3, 1, 4, 1), .status = TG_ERANGE,
     .msg = "axis -3"},
};

const tg_opdef tg__op_slice = {.name = "slice", .n_in = 1, .rule = rule_copy,
                               .forward = forward_copy, .backward = backward,
                               TG__CASES(copy_cases)};

const tg_opdef tg__op_slice_view = {.name = "slice_view", .api = "tg_slice",
                                    .n_in = 1, .flags = TG__OP_VIEW,
                                    .rule = rule_view, .forward = forward_view,
                                    .backward = backward, TG__CASES(view_cases)};

tg_tensor *tg_slice(tg_tape *t, tg_tensor *a, int axis, int64_t start,
                    int64_t stop, int64_t step) {
  if (!a) return NULL; /* an earlier op failed: keep its message */
  tg_opargs args = {.i = {axis, start, stop, step}};
  span s;
  /* Bad arguments go to the copy, whose rule reports them. */
  bool view = locate(a, &args, &s) >= 0 && contiguous(&s);
  return view ? TG__APPLY(t, slice_view, &args, a) : TG__APPLY(t, slice, &args, a);
}
