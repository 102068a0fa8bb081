/* ops/gather.c: PyTorch's gather along one axis: y has index's shape and
 * y[i] = a[i with i[axis] replaced by index[i]]; index is int32 with a's
 * ndim and index.shape[d] <= a.shape[d] for d != axis. Backward
 * scatter-adds: da[i with i[axis] = index[i]] += g[i], so repeated indices
 * accumulate. Forward keeps a copy of the checked indices, so backward
 * never trusts the caller's buffer a second time. The axis is args i[0]. */
#include <string.h>

#include "op.h"

/* index's shape, a's strides and the axis, padded in front to 4 dims. */
typedef struct {
  int64_t is[4], as[4];
  int ax;
} walk4;

static walk4 walk_of(const tg_tensor *a, const tg_tensor *index, int ax) {
  walk4 w;
  int off = 4 - a->ndim;
  int64_t s = 1;
  for (int d = 3; d >= 0; d--) {
    int e = d - off;
    w.is[d] = e >= 0 ? index->shape[e] : 1;
    w.as[d] = s;
    if (e >= 0) s *= a->shape[e];
  }
  w.ax = ax + off;
  return w;
}

/* The offset in a of index position (i0..i3), its axis coordinate
 * replaced by the index j. */
static inline int64_t at(const walk4 *w, const int64_t i[4], int64_t j) {
  int64_t o = 0;
  for (int d = 0; d < 4; d++) o += (d == w->ax ? j : i[d]) * w->as[d];
  return o;
}

/* Calls BODY(k, offset) for every index position k in order. */
#define WALK(w, idx, BODY)                                                   \
  do {                                                                       \
    int64_t k_ = 0, i_[4];                                                   \
    for (i_[0] = 0; i_[0] < (w).is[0]; i_[0]++)                              \
      for (i_[1] = 0; i_[1] < (w).is[1]; i_[1]++)                            \
        for (i_[2] = 0; i_[2] < (w).is[2]; i_[2]++)                          \
          for (i_[3] = 0; i_[3] < (w).is[3]; i_[3]++, k_++) {                \
            int64_t off_ = at(&(w), i_, (idx)[k_]);                          \
            BODY(k_, off_);                                                  \
          }                                                                  \
  } while (0)

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96], si[96];
  const tg_tensor *x = in[0], *index = in[1];
  int64_t ax = a->i[0] < 0 ? a->i[0] + x->ndim : a->i[0];
  if (ax < 0 || ax >= x->ndim)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for a of %s", fn,
                   (long long)a->i[0], tg__shape_str(x, sa));
  bool bad = index->ndim != x->ndim;
  for (int d = 0; !bad && d < x->ndim; d++)
    bad = d != ax && index->shape[d] > x->shape[d];
  if (bad)
    return tg__err(TG_ESHAPE, "%s: index is %s, a is %s; index needs a's ndim and "
                   "no larger a size than a's outside axis %lld", fn,
                   tg__shape_str(index, si), tg__shape_str(x, sa), (long long)ax);
  /* Every index checked before anything is written. */
  const int32_t *idx = index->data;
  for (int64_t k = 0; k < index->numel; k++)
    if (idx[k] < 0 || idx[k] >= x->shape[ax]) {
      char pos[96];
      int n = 0;
      int64_t rest = k, div[TG_MAX_DIMS], s = 1;
      for (int d = index->ndim - 1; d >= 0; d--) {
        div[d] = s;
        s *= index->shape[d];
      }
      pos[n++] = '[';
      for (int d = 0; d < index->ndim; d++) {
        n += snprintf(pos + n, sizeof pos - (size_t)n, d ? ",%lld" : "%lld",
                      (long long)(rest / div[d]));
        rest %= div[d];
      }
      snprintf(pos + n, sizeof pos - (size_t)n, "]");
      return tg__err(TG_ERANGE, "%s: index %d at position %s is out of range for "
                     "axis %lld of a of %s", fn, idx[k], pos, (long long)ax,
                     tg__shape_str(x, sa));
    }
  out->ndim = index->ndim;
  memcpy(out->shape, index->shape, sizeof out->shape);
  return TG_OK;
}

static int axis_of(const tg_node *n) {
  int64_t ax = n->args.i[0];
  return (int)(ax < 0 ? ax + n->in[0]->ndim : ax);
}

#define KERNELS(T, S)                                                        \
  static void gather_##S(const T *restrict x, T *restrict y,                \
                         const int32_t *idx, walk4 w) {                      \
    WALK(w, idx, GATHER_ONE);                                                \
  }                                                                          \
  static void gather_bwd_##S(const T *restrict g, T *restrict dx,           \
                             const int32_t *idx, walk4 w) {                  \
    WALK(w, idx, SCATTER_ONE);                                               \
  }
#define GATHER_ONE(k, off) y[k] = x[off]
#define SCATTER_ONE(k, off) dx[off] += g[k]
TG__BOTH(KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *a = n->in[0], *index = n->in[1];
  const int32_t *idx = index->data;
  if (tg__recorded(n) && index->numel) {
    size_t bytes = (size_t)index->numel * sizeof *idx;
    if (!(n->saved = tg__arena_alloc(t, bytes)))
      return tg__err(TG_ENOMEM, "tg_gather: out of memory");
    memcpy(n->saved, idx, bytes);
  }
  walk4 w = walk_of(a, index, axis_of(n));
  if (a->dtype == TG_F32)
    gather_f32(a->data, n->out->data, idx, w);
  else
    gather_f64(a->data, n->out->data, idx, w);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *da = tg__gin(n, 0);
  if (!da || !n->out->numel) return;
  walk4 w = walk_of(n->in[0], n->in[1], axis_of(n));
  if (n->out->dtype == TG_F32)
    gather_bwd_f32(n->out->grad, da, n->saved, w);
  else
    gather_bwd_f64(n->out->grad, da, n->saved, w);
}

#define GA(ax, c) .domain = {0, TG__DOM_CLASS}, .args = {.i = {ax}}, .classes = c
static const tg_opcase cases[] = {
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 6}}, GA(1, 4)},     /* more picks than a's row */
    {.ndim = {2, 2}, .shape = {{3, 4}, {2, 2}}, GA(-1, 4)},    /* a smaller index */
    {.ndim = {2, 2}, .shape = {{3, 4}, {5, 4}}, GA(0, 3)},     /* along axis 0 */
    {.ndim = {1, 1}, .shape = {{5}, {9}}, GA(0, 5)},           /* repeats for sure */
    {.ndim = {3, 3}, .shape = {{2, 3, 4}, {2, 5, 3}}, GA(-2, 3)},
    {.ndim = {4, 4}, .shape = {{2, 1, 3, 2}, {2, 1, 2, 2}}, GA(3, 2)},
    {.ndim = {2, 2}, .shape = {{1, 1}, {1, 1}}, GA(0, 1)},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, GA(2, 4), .status = TG_ERANGE,
     .msg = "axis 2 is out of range for a of [3,4]"},
    {.ndim = {2, 1}, .shape = {{3, 4}, {3}}, GA(1, 4), .status = TG_ESHAPE,
     .msg = "index is [3], a is [3,4]"},
    {.ndim = {2, 2}, .shape = {{3, 4}, {4, 2}}, GA(1, 4), .status = TG_ESHAPE,
     .msg = "index is [4,2], a is [3,4]"},
    {.ndim = {2, 2}, .shape = {{3, 4}, {3, 8}}, GA(1, 1000), .status = TG_ERANGE,
     .msg = "out of range for axis 1 of a of [3,4]"},
    {.ndim = {0, 0}, .shape = {{0}, {0}}, GA(0, 1), .status = TG_ERANGE, .msg = "axis 0"},
};

const tg_opdef tg__op_gather = {.name = "gather", .n_in = 2,
                                .in_names = {"a", "index"},
                                .flags = TG__IN_INT(1), .rule = rule,
                                .forward = forward, .backward = backward,
                                TG__CASES(cases)};

tg_tensor *tg_gather(tg_tape *t, tg_tensor *a, int axis, tg_tensor *index) {
  return TG__APPLY(t, gather, &(tg_opargs){.i = {axis}}, a, index);
}
