/* ops/reshape.c: y = a with another shape of the same element count, a view
 * that shares a's data (all tensors are contiguous, so the element order is
 * the same): y[i] = a[i] in flat order; backward da[i] += g[i]. The new
 * shape is args i[0..3] and its ndim i[4]; at most one dimension is -1,
 * inferred from the others. */
#include "op.h"

/* "[4,-1]" for the requested shape, into buf of at least 96 bytes. */
static const char *req_str(const tg_opargs *a, int ndim, char *buf) {
  int n = 0;
  buf[n++] = '[';
  for (int d = 0; d < ndim; d++)
    n += snprintf(buf + n, 96 - (size_t)n, d ? ",%lld" : "%lld", (long long)a->i[d]);
  snprintf(buf + n, 96 - (size_t)n, "]");
  return buf;
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96], sr[96];
  const tg_tensor *x = in[0];
  int64_t ndim = a->i[4];
  if (ndim < 0 || ndim > TG_MAX_DIMS)
    return tg__err(TG_ESHAPE, "%s: ndim is %lld; it must be 0 to %d", fn,
                   (long long)ndim, TG_MAX_DIMS);
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < ndim; d++) {
    int64_t s = a->i[d];
    if (s == -1 && infer < 0) {
      infer = d;
      continue;
    }
    if (s < 0)
      return tg__err(TG_ESHAPE, "%s: shape %s: dimension %d is %lld; dimensions "
                     "are >= 0, and at most one is -1 (inferred)", fn,
                     req_str(a, (int)ndim, sr), d, (long long)s);
    /* Past x's element count the product cannot match: cap it there
     * rather than let it overflow. */
    if (s && known > x->numel / s)
      known = x->numel + 1;
    else
      known *= s;
  }
  out->ndim = (int)ndim;
  for (int d = 0; d < ndim; d++) out->shape[d] = a->i[d];
  if (infer >= 0) {
    if (known == 0 || x->numel % known)
      return tg__err(TG_ESHAPE, "%s: a of %s (%lld elements) cannot be viewed as "
                     "%s: no size for the -1 dimension fits", fn,
                     tg__shape_str(x, sa), (long long)x->numel,
                     req_str(a, (int)ndim, sr));
    out->shape[infer] = x->numel / known;
  } else if (known != x->numel) {
    return tg__err(TG_ESHAPE, "%s: a of %s (%lld elements) cannot be viewed as "
                   "%s: the element counts differ", fn, tg__shape_str(x, sa),
                   (long long)x->numel, req_str(a, (int)ndim, sr));
  }
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  n->out->data = n->in[0]->data;
  return TG_OK;
}

/* da += g over threads for large tensors (each element on one thread). */
typedef struct {
  const void *g;
  void *d;
} job;
#define KERNELS(T, S)                                                        \
  static void add_##S(void *p, int64_t i0, int64_t i1) {                     \
    const job *j = p;                                                        \
    const T *restrict g = j->g;                                              \
    T *restrict d = j->d;                                                    \
    TG__SIMD for (int64_t i = i0; i < i1; i++) d[i] += g[i];                 \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (!da) return;
  job j = {n->out->grad, da};
  tg__par_range(n->out->numel, TG__PAR_ELEMS,
                n->out->dtype == TG_F32 ? add_f32 : add_f64, &j);
}

#define SHAPE(...) .i = {__VA_ARGS__}
static const tg_opcase cases[] = {
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(3, 2, 0, 0, 2)}},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {SHAPE(-1, 4, 0, 0, 2)}},
    {.ndim = {2}, .shape = {{2, 6}}, .args = {SHAPE(3, -1, 2, 1, 4)}},
    {.ndim = {0}, .args = {SHAPE(1, 0, 0, 0, 1)}},          /* 0-d to [1] */
    {.ndim = {1}, .shape = {{1}}, .args = {SHAPE(0, 0, 0, 0, 0)}}, /* and back */
    {.ndim = {4}, .shape = {{2, 1, 3, 1}}, .args = {SHAPE(6, 0, 0, 0, 1)}},
    {.ndim = {1}, .shape = {{5}}, .args = {SHAPE(1, 5, 1, 0, 3)}},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(4, 2, 0, 0, 2)},
     .status = TG_ESHAPE, .msg = "[2,3] (6 elements) cannot be viewed as [4,2]"},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(-1, 4, 0, 0, 2)},
     .status = TG_ESHAPE, .msg = "no size for the -1"},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(-1, -1, 0, 0, 2)},
     .status = TG_ESHAPE, .msg = "at most one is -1"},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(-2, -3, 0, 0, 2)},
     .status = TG_ESHAPE, .msg = "dimension 0 is -2"},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {SHAPE(6, 1, 1, 1, 5)},
     .status = TG_ESHAPE, .msg = "ndim is 5"},
};

const tg_opdef tg__op_reshape = {.name = "reshape", .n_in = 1,
                                 .flags = TG__OP_VIEW, .rule = rule,
                                 .forward = forward, .backward = backward,
                                 TG__CASES(cases)};

tg_tensor *tg_reshape(tg_tape *t, tg_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL; /* an earlier op failed: keep its message */
  if (ndim < 0 || ndim > TG_MAX_DIMS) {
    tg__err(TG_ESHAPE, "tg_reshape: ndim is %d; it must be 0 to %d", ndim, TG_MAX_DIMS);
    return NULL;
  }
  if (ndim && !shape) {
    tg__err(TG_EINVAL, "tg_reshape: shape is NULL");
    return NULL;
  }
  tg_opargs args = {.i = {0, 0, 0, 0, ndim}};
  for (int d = 0; d < ndim; d++) args.i[d] = shape[d];
  return TG__APPLY(t, reshape, &args, a);
}
