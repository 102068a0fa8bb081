/* ops/embedding.c: rows of a table picked by integer indices,
 *   y[p..., :] = table[index[p...], :]
 * for table [V,D] and int32 index of any shape (0-3 dims): y is
 * [index.shape..., D]. Backward scatter-adds: dtable[index[p], :] += g[p, :]
 * for every position p, in order, so an index that repeats gets the sum of
 * its rows' gradients. Forward keeps a copy of the checked indices, so
 * backward never trusts the caller's buffer a second time (see ops/pick.c). */
#include <string.h>

#include "op.h"

#define KERNELS(T, S)                                                        \
  static void gather_##S(const T *restrict table, const int32_t *idx,        \
                         T *restrict y, int64_t n, int64_t D) {              \
    for (int64_t p = 0; p < n; p++)                                          \
      memcpy(y + p * D, table + (int64_t)idx[p] * D, (size_t)D * sizeof(T)); \
  }                                                                          \
  static void scatter_##S(const T *restrict g, const int32_t *idx,           \
                          T *restrict dt, int64_t n, int64_t D) {            \
    for (int64_t p = 0; p < n; p++) {                                        \
      T *row = dt + (int64_t)idx[p] * D;                                     \
      const T *gr = g + p * D;                                               \
      TG__SIMD                                                               \
      for (int64_t j = 0; j < D; j++) row[j] += gr[j];                       \
    }                                                                        \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static void backward(const tg_node *n) {
  void *dt = tg__gin(n, 0);
  if (!dt) return;
  const int32_t *idx = n->saved;
  int64_t cnt = n->in[1]->numel, D = n->in[0]->shape[1];
  if (n->out->dtype == TG_F32)
    scatter_f32(n->out->grad, idx, dt, cnt, D);
  else
    scatter_f64(n->out->grad, idx, dt, cnt, D);
}

/* "[1,2]", position p of an index of shape ix, into buf (at least 96). */
static const char *pos_str(const tg_tensor *ix, int64_t p, char *buf) {
  int64_t sub[TG_MAX_DIMS];
  for (int d = ix->ndim - 1; d >= 0; d--) {
    sub[d] = p % ix->shape[d];
    p /= ix->shape[d];
  }
  int k = snprintf(buf, 96, "[");
  for (int d = 0; d < ix->ndim; d++)
    k += snprintf(buf + k, (size_t)(96 - k), d ? ",%lld" : "%lld", (long long)sub[d]);
  snprintf(buf + k, (size_t)(96 - k), "]");
  return buf;
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  const tg_tensor *table = in[0], *ix = in[1];
  char st[96], si[96];
  if (table->ndim != 2)
    return tg__err(TG_ESHAPE, "%s: table must be 2-D [V,D], got %s", fn,
                   tg__shape_str(table, st));
  if (ix->ndim > TG_MAX_DIMS - 1)
    return tg__err(TG_ESHAPE,
                   "%s: index is %s; it may have at most %d dims (the result "
                   "adds one)", fn, tg__shape_str(ix, si), TG_MAX_DIMS - 1);
  int64_t V = table->shape[0];
  const int32_t *idx = ix->data;
  for (int64_t p = 0; p < ix->numel; p++)
    if (idx[p] < 0 || idx[p] >= V)
      return tg__err(TG_ERANGE,
                     "%s: index%s is %d; it must be in [0, %lld) for a table "
                     "of %s", fn, pos_str(ix, p, si), idx[p], (long long)V,
                     tg__shape_str(table, st));
  out->ndim = ix->ndim + 1;
  memcpy(out->shape, ix->shape, (size_t)ix->ndim * sizeof(int64_t));
  out->shape[ix->ndim] = table->shape[1];
  return TG_OK;
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *table = n->in[0], *ix = n->in[1];
  const int32_t *idx = ix->data;
  if (tg__recorded(n)) {
    size_t bytes = (size_t)ix->numel * sizeof *idx;
    if (!(n->saved = tg__arena_alloc(t, bytes ? bytes : 1)))
      return tg__err(TG_ENOMEM, "tg_embedding: out of memory");
    memcpy(n->saved, idx, bytes);
    idx = n->saved;
  }
  if (table->dtype == TG_F32)
    gather_f32(table->data, idx, n->out->data, ix->numel, table->shape[1]);
  else
    gather_f64(table->data, idx, n->out->data, ix->numel, table->shape[1]);
  return TG_OK;
}

#define CASE(v, d, ni, ...)                                                  \
  {.ndim = {2, ni}, .shape = {{v, d}, {__VA_ARGS__}},                        \
   .domain = {0, TG__DOM_CLASS}, .classes = v}
static const tg_opcase cases[] = {
    CASE(5, 3, 1, 7),
    CASE(4, 2, 0, 0),
    CASE(3, 4, 2, 2, 5),
    CASE(6, 1, 3, 2, 3, 2),
    CASE(1, 3, 1, 4),
    CASE(2, 3, 2, 1, 1),
    /* 1000 classes for a table of 1 row: out of range but for a chance of
     * 1e-15 that all five indices come out 0 */
    {.ndim = {2, 1}, .shape = {{1, 3}, {5}}, .domain = {0, TG__DOM_CLASS},
     .classes = 1000, .status = TG_ERANGE, .msg = "must be in [0, 1)"},
    {.ndim = {1, 1}, .shape = {{3}, {2}}, .domain = {0, TG__DOM_CLASS},
     .classes = 1, .status = TG_ESHAPE, .msg = "table must be 2-D"},
    {.ndim = {2, 4}, .shape = {{3, 2}, {1, 2, 1, 2}},
     .domain = {0, TG__DOM_CLASS}, .classes = 3, .status = TG_ESHAPE,
     .msg = "at most 3 dims"},
};

const tg_opdef tg__op_embedding = {.name = "embedding", .n_in = 2,
                                   .in_names = {"table", "index"},
                                   .flags = TG__IN_INT(1), .rule = rule,
                                   .forward = forward, .backward = backward,
                                   TG__CASES(cases)};

tg_tensor *tg_embedding(tg_tape *t, tg_tensor *table, tg_tensor *index) {
  return TG__APPLY(t, embedding, NULL, table, index);
}
