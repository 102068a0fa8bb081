/* ops/concat.c: joining tensors along an axis, and stacking them along a
 * new one. Around the axis every input k is [outer, chunk_k]: concat's
 * chunk_k is len_k * inner (shapes equal except along the axis, whose
 * sizes add up); stack's is the input's whole trailing part from the axis
 * on (all shapes equal; a new axis of size n). Either way
 * y[o] = (x_0[o], x_1[o], ...) and backward hands each input its part:
 * dx_k[o, j] += g[o, off_k + j]. Args: i[0] the axis; n_in the number of
 * inputs (the door's). */
#include <string.h>

#include "op.h"

/* Input k differs from input 0 (in a dimension other than skip; -1 for
 * none). */
static int mismatch(const char *fn, tg_tensor *const *in, int k, int skip,
                    const char *how) {
  char s0[96], sk[96];
  const tg_tensor *x = in[0], *y = in[k];
  bool bad = x->ndim != y->ndim;
  for (int d = 0; !bad && d < x->ndim; d++)
    bad = d != skip && x->shape[d] != y->shape[d];
  if (!bad) return TG_OK;
  return tg__err(TG_ESHAPE, "%s: xs[%d] is %s, xs[0] is %s; %s", fn, k,
                 tg__shape_str(y, sk), tg__shape_str(x, s0), how);
}

static int rule_concat(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                       tg_outshape *out) {
  char s0[96], how[64];
  int rc;
  const tg_tensor *x = in[0];
  int64_t ax = a->i[0] < 0 ? a->i[0] + x->ndim : a->i[0];
  if (ax < 0 || ax >= x->ndim)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for xs[0] of %s", fn,
                   (long long)a->i[0], tg__shape_str(x, s0));
  snprintf(how, sizeof how, "shapes must agree except along axis %lld", (long long)ax);
  out->ndim = x->ndim;
  memcpy(out->shape, x->shape, sizeof out->shape);
  for (int k = 1; k < a->n_in; k++) {
    if ((rc = mismatch(fn, in, k, (int)ax, how))) return rc;
    out->shape[ax] += in[k]->shape[ax];
  }
  return TG_OK;
}

static int rule_stack(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                      tg_outshape *out) {
  char s0[96];
  int rc;
  const tg_tensor *x = in[0];
  if (x->ndim >= TG_MAX_DIMS)
    return tg__err(TG_ESHAPE, "%s: xs[0] is %s; the stack would have %d "
                   "dimensions, more than %d", fn, tg__shape_str(x, s0),
                   x->ndim + 1, TG_MAX_DIMS);
  int64_t ax = a->i[0] < 0 ? a->i[0] + x->ndim + 1 : a->i[0];
  if (ax < 0 || ax > x->ndim)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for stacking xs[0] "
                   "of %s", fn, (long long)a->i[0], tg__shape_str(x, s0));
  for (int k = 1; k < a->n_in; k++)
    if ((rc = mismatch(fn, in, k, -1, "stacked shapes must be equal"))) return rc;
  out->ndim = x->ndim + 1;
  for (int d = 0, e = 0; d < out->ndim; d++)
    out->shape[d] = d == ax ? a->n_in : x->shape[e++];
  return TG_OK;
}

/* The product of the dimensions before the joining axis: the output's,
 * which are every input's. The output has that axis for both ops, so a
 * negative one counts from its end. */
static int64_t outer_of(const tg_node *n) {
  const tg_tensor *y = n->out;
  int64_t ax = n->args.i[0] < 0 ? n->args.i[0] + y->ndim : n->args.i[0];
  int64_t outer = 1;
  for (int d = 0; d < ax; d++) outer *= y->shape[d];
  return outer;
}

#define KERNELS(T, S)                                                        \
  static void join_##S(tg_tensor *const *in, int n, T *restrict y,          \
                       int64_t outer) {                                      \
    for (int64_t o = 0; o < outer; o++)                                      \
      for (int k = 0; k < n; k++) {                                          \
        int64_t c = in[k]->numel / outer;                                    \
        const T *xr = (const T *)in[k]->data + o * c;                        \
        TG__SIMD for (int64_t j = 0; j < c; j++) y[j] = xr[j];               \
        y += c;                                                              \
      }                                                                      \
  }                                                                          \
  static void join_bwd_##S(const tg_node *nd, const T *restrict g,          \
                           int64_t outer) {                                  \
    for (int64_t o = 0; o < outer; o++)                                      \
      for (int k = 0; k < nd->n_in; k++) {                                   \
        int64_t c = nd->in[k]->numel / outer;                                \
        T *dr = tg__gin(nd, k);                                              \
        if (dr) {                                                            \
          dr += o * c;                                                       \
          TG__SIMD for (int64_t j = 0; j < c; j++) dr[j] += g[j];            \
        }                                                                    \
        g += c;                                                              \
      }                                                                      \
  }
TG__BOTH(KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  int64_t outer = outer_of(n);
  if (!outer || !n->out->numel) return TG_OK;
  if (n->out->dtype == TG_F32)
    join_f32(n->in, n->n_in, n->out->data, outer);
  else
    join_f64(n->in, n->n_in, n->out->data, outer);
  return TG_OK;
}

static void backward(const tg_node *n) {
  int64_t outer = outer_of(n);
  if (!outer || !n->out->numel) return;
  if (n->out->dtype == TG_F32)
    join_bwd_f32(n, n->out->grad, outer);
  else
    join_bwd_f64(n, n->out->grad, outer);
}


static const tg_opcase concat_cases[] = {
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {4, 3}}, .args = {.i = {0}}},
    {.n = 3, .ndim = {2, 2, 2}, .shape = {{2, 3}, {2, 1}, {2, 2}}, .args = {.i = {-1}}},
    {.n = 1, .ndim = {1}, .shape = {{5}}, .args = {.i = {0}}},
    {.n = 4, .ndim = {3, 3, 3, 3}, .shape = {{2, 1, 3}, {2, 2, 3}, {2, 1, 3}, {2, 3, 3}},
     .args = {.i = {1}}},
    {.n = 2, .ndim = {4, 4}, .shape = {{1, 2, 1, 3}, {1, 2, 1, 3}}, .args = {.i = {2}}},
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {3, 3}}, .args = {.i = {1}},
     .status = TG_ESHAPE, .msg = "xs[1] is [3,3], xs[0] is [2,3]"},
    {.n = 3, .ndim = {2, 2, 1}, .shape = {{2, 3}, {2, 3}, {6}}, .args = {.i = {0}},
     .status = TG_ESHAPE, .msg = "xs[2] is [6], xs[0] is [2,3]"},
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {2, 3}}, .args = {.i = {2}},
     .status = TG_ERANGE, .msg = "axis 2 is out of range"},
    {.n = 1, .ndim = {0}, .args = {.i = {0}}, .status = TG_ERANGE, .msg = "axis 0"},
};

static const tg_opcase stack_cases[] = {
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {2, 3}}, .args = {.i = {0}}},
    {.n = 3, .ndim = {2, 2, 2}, .shape = {{2, 3}, {2, 3}, {2, 3}}, .args = {.i = {-1}}},
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {2, 3}}, .args = {.i = {1}}},
    {.n = 3, .ndim = {0, 0, 0}, .args = {.i = {0}}}, /* 0-d to [3] */
    {.n = 1, .ndim = {3}, .shape = {{2, 1, 2}}, .args = {.i = {-2}}},
    {.n = 2, .ndim = {2, 2}, .shape = {{2, 3}, {3, 2}}, .args = {.i = {0}},
     .status = TG_ESHAPE, .msg = "xs[1] is [3,2], xs[0] is [2,3]"},
    {.n = 2, .ndim = {4, 4}, .shape = {{1, 2, 1, 2}, {1, 2, 1, 2}}, .args = {.i = {0}},
     .status = TG_ESHAPE, .msg = "would have 5 dimensions"},
    {.n = 2, .ndim = {1, 1}, .shape = {{3}, {3}}, .args = {.i = {2}},
     .status = TG_ERANGE, .msg = "axis 2 is out of range"},
    {.n = 2, .ndim = {1, 1}, .shape = {{3}, {3}}, .args = {.i = {-3}},
     .status = TG_ERANGE, .msg = "axis -3 is out of range"},
};

const tg_opdef tg__op_concat = {.name = "concat", .n_in = TG__VARIADIC,
                                .in_names = {"xs"}, .rule = rule_concat,
                                .forward = forward,
                                .backward = backward,
                                TG__CASES(concat_cases)};

const tg_opdef tg__op_stack = {.name = "stack", .n_in = TG__VARIADIC,
                               .in_names = {"xs"}, .rule = rule_stack,
                               .forward = forward,
                               .backward = backward,
                               TG__CASES(stack_cases)};

static tg_tensor *join(tg_tape *t, const tg_opdef *op, tg_tensor *const *xs,
                       int n, int axis) {
  /* n < 1 and a NULL xs are the door's to refuse, with its message. */
  return tg__apply_n(t, op, xs, n, &(tg_opargs){.i = {axis}});
}

tg_tensor *tg_concat(tg_tape *t, tg_tensor *const *xs, int n, int axis) {
  return join(t, &tg__op_concat, xs, n, axis);
}

tg_tensor *tg_stack(tg_tape *t, tg_tensor *const *xs, int n, int axis) {
  return join(t, &tg__op_stack, xs, n, axis);
}
