/* ops/permute.c: y = a with its axes reordered by perm (a copy):
 * y[i_0..i_{n-1}] = a[j] with j[perm[d]] = i_d, so y.shape[d] =
 * a.shape[perm[d]]. Backward applies the inverse permutation to g:
 * da[j] += g[i] over the same pairs of positions. tg_transpose is the
 * permute that swaps two axes. perm is args i[0..ndim-1]. */
#include "op.h"

/* The shape of y and, per axis of y, the stride of a along it, both
 * padded in front to 4 axes (size 1, stride 0). */
static void walk(const tg_tensor *a, const int64_t *perm, int64_t ys[4],
                 int64_t st[4]) {
  int64_t as[TG_MAX_DIMS], s = 1;
  for (int d = a->ndim - 1; d >= 0; d--) {
    as[d] = s;
    s *= a->shape[d];
  }
  int off = 4 - a->ndim;
  for (int d = 0; d < 4; d++) ys[d] = 1, st[d] = 0;
  for (int d = 0; d < a->ndim; d++) {
    ys[off + d] = a->shape[perm[d]];
    st[off + d] = as[perm[d]];
  }
}

/* One call's operands for the thread door: rows r = (i0, i1, i2) of y,
 * each ys[3] long, so each thread writes (and backward adds to) its own
 * elements: a permutation pairs every position of y with one of a. */
typedef struct {
  const void *src;
  void *dst;
  int64_t ys[4], st[4];
} job;

/* The last axis of y is the last of a (st[3] == 1, head splits and merges)
 * or not: a contiguous run or a strided one per row. */
#define KERNELS(T, S)                                                        \
  static void permute_##S(void *p, int64_t r0, int64_t r1) {                 \
    const job *j = p;                                                        \
    const T *restrict x = j->src;                                            \
    T *restrict y = j->dst;                                                  \
    const int64_t *ys = j->ys, *st = j->st, n3 = ys[3];                      \
    for (int64_t r = r0; r < r1; r++) {                                      \
      int64_t i2 = r % ys[2], i1 = r / ys[2] % ys[1], i0 = r / ys[2] / ys[1]; \
      const T *xb = x + i0 * st[0] + i1 * st[1] + i2 * st[2];                \
      T *yr = y + r * n3;                                                    \
      if (st[3] == 1) {                                                      \
        TG__SIMD                                                             \
        for (int64_t i3 = 0; i3 < n3; i3++) yr[i3] = xb[i3];                 \
      } else {                                                               \
        for (int64_t i3 = 0; i3 < n3; i3++) yr[i3] = xb[i3 * st[3]];         \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  static void permute_bwd_##S(void *p, int64_t r0, int64_t r1) {             \
    const job *j = p;                                                        \
    const T *restrict g = j->src;                                            \
    T *restrict dx = j->dst;                                                 \
    const int64_t *ys = j->ys, *st = j->st, n3 = ys[3];                      \
    for (int64_t r = r0; r < r1; r++) {                                      \
      int64_t i2 = r % ys[2], i1 = r / ys[2] % ys[1], i0 = r / ys[2] / ys[1]; \
      T *db = dx + i0 * st[0] + i1 * st[1] + i2 * st[2];                     \
      const T *gr = g + r * n3;                                              \
      if (st[3] == 1) {                                                      \
        TG__SIMD                                                             \
        for (int64_t i3 = 0; i3 < n3; i3++) db[i3] += gr[i3];                \
      } else {                                                               \
        for (int64_t i3 = 0; i3 < n3; i3++) db[i3 * st[3]] += gr[i3];        \
      }                                                                      \
    }                                                                        \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static void run(const tg_node *n, const void *src, void *dst, bool bwd) {
  job j = {.src = src, .dst = dst};
  walk(n->in[0], n->args.i, j.ys, j.st);
  int64_t rows = j.ys[0] * j.ys[1] * j.ys[2];
  bool f32 = n->out->dtype == TG_F32;
  tg__par_range(rows, tg__par_rows(j.ys[3]),
                bwd ? (f32 ? permute_bwd_f32 : permute_bwd_f64)
                    : (f32 ? permute_f32 : permute_f64),
                &j);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96];
  const tg_tensor *x = in[0];
  unsigned seen = 0;
  for (int d = 0; d < x->ndim; d++) {
    int64_t p = a->i[d];
    if (p < 0 || p >= x->ndim)
      return tg__err(TG_EINVAL, "%s: perm[%d] is %lld; for a of %s it must be "
                     "in [0, %d)", fn, d, (long long)p, tg__shape_str(x, sa), x->ndim);
    if (seen & (1u << p))
      return tg__err(TG_EINVAL, "%s: perm repeats axis %lld; for a of %s it must "
                     "be a permutation of 0..%d", fn, (long long)p,
                     tg__shape_str(x, sa), x->ndim - 1);
    seen |= 1u << p;
    out->shape[d] = x->shape[p];
  }
  out->ndim = x->ndim;
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  run(n, n->in[0]->data, n->out->data, false);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (da) run(n, n->out->grad, da, true);
}

static const tg_opcase cases[] = {
    {.ndim = {2}, .shape = {{2, 3}}, .args = {.i = {1, 0}}},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {2, 0, 1}}},
    {.ndim = {4}, .shape = {{2, 1, 3, 2}}, .args = {.i = {3, 1, 0, 2}}},
    {.ndim = {4}, .shape = {{2, 3, 1, 2}}, .args = {.i = {0, 1, 2, 3}}},
    {.ndim = {1}, .shape = {{5}}, .args = {.i = {0}}},
    {.ndim = {0}},
    {.ndim = {2}, .shape = {{2, 3}}, .args = {.i = {0, 2}},
     .status = TG_EINVAL, .msg = "perm[1] is 2"},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {-1, 0, 1}},
     .status = TG_EINVAL, .msg = "perm[0] is -1"},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {1, 0, 1}},
     .status = TG_EINVAL, .msg = "perm repeats axis 1"},
};

const tg_opdef tg__op_permute = {.name = "permute", .n_in = 1, .rule = rule,
                                 .forward = forward, .backward = backward,
                                 TG__CASES(cases)};

tg_tensor *tg_permute(tg_tape *t, tg_tensor *a, const int *perm) {
  if (!a) return NULL; /* an earlier op failed: keep its message */
  if (a->ndim && !perm) {
    tg__err(TG_EINVAL, "tg_permute: perm is NULL");
    return NULL;
  }
  tg_opargs args = {0};
  for (int d = 0; d < a->ndim; d++) args.i[d] = perm[d];
  return TG__APPLY(t, permute, &args, a);
}

tg_tensor *tg_transpose(tg_tape *t, tg_tensor *a, int d0, int d1) {
  if (!a) return NULL;
  int ax[2] = {d0, d1};
  for (int k = 0; k < 2; k++) {
    if (ax[k] < 0) ax[k] += a->ndim;
    if (ax[k] < 0 || ax[k] >= a->ndim) {
      char sa[96];
      tg__err(TG_ERANGE, "tg_transpose: d%d is %d; a of %s has %d axes", k,
              k ? d1 : d0, tg__shape_str(a, sa), a->ndim);
      return NULL;
    }
  }
  tg_opargs args = {0};
  for (int d = 0; d < a->ndim; d++) args.i[d] = d;
  args.i[ax[0]] = ax[1];
  args.i[ax[1]] = ax[0];
  return TG__APPLY(t, permute, &args, a);
}
