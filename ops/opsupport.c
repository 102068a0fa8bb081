/* ops/opsupport.c: shape rules and checks shared by the ops. */
#include <string.h>

#include "op.h"

int tg__rule_same(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                  tg_outshape *out) {
  (void)fn;
  (void)a;
  out->ndim = in[0]->ndim;
  memcpy(out->shape, in[0]->shape, sizeof out->shape);
  return TG_OK;
}

int tg__rule_same2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out) {
  int rc = tg__check_same(fn, in[0], in[1]);
  return rc ? rc : tg__rule_same(fn, in, a, out);
}

void tg__out_scalar(tg_outshape *out, tg_dtype dtype) {
  out->dtype = dtype;
  out->ndim = 0;
}

int tg__check_same(const char *fn, const tg_tensor *a, const tg_tensor *b) {
  char sa[96], sb[96];
  if (!tg__same_shape(a, b))
    return tg__err(TG_ESHAPE, "%s: shapes differ: a is %s, b is %s", fn,
                   tg__shape_str(a, sa), tg__shape_str(b, sb));
  return TG_OK;
}

int tg__check_2d(const char *fn, const tg_tensor *x, const char *what) {
  char sb[96];
  if (x->ndim != 2)
    return tg__err(TG_ESHAPE, "%s: %s must be 2-D [N,C], got %s", fn, what,
                   tg__shape_str(x, sb));
  return TG_OK;
}

/* Columns over threads, each summing its rows in order: the same sums as
 * on one thread. */
typedef struct {
  const void *g;
  void *d;
  int64_t rows, cols;
} colsum_job;
#define COLSUM(T, S)                                                          \
  static void colsum_range_##S(void *p, int64_t c0, int64_t c1) {             \
    const colsum_job *j = p;                                                  \
    const T *restrict g = j->g;                                               \
    T *restrict d = j->d;                                                     \
    for (int64_t r = 0; r < j->rows; r++) {                                   \
      TG__SIMD                                                                \
      for (int64_t c = c0; c < c1; c++) d[c] += g[r * j->cols + c];           \
    }                                                                         \
  }                                                                           \
  void tg__colsum_acc_##S(const T *restrict g, T *restrict d, int64_t rows,  \
                          int64_t cols) {                                     \
    colsum_job j = {g, d, rows, cols};                                        \
    int64_t min_cols = rows > 0 ? TG__PAR_ELEMS / rows + 1 : cols;            \
    tg__par_range(cols, min_cols, colsum_range_##S, &j);                      \
  }
TG__BOTH(COLSUM)
#undef COLSUM

#define ROWSUM(T, S)                                                          \
  T tg__rowsum_##S(const T *x, int64_t n) {                                   \
    T a[8] = {0};                                                             \
    int64_t i = 0;                                                            \
    for (; i + 8 <= n; i += 8)                                                \
      for (int l = 0; l < 8; l++) a[l] += x[i + l];                           \
    for (int l = 0; i < n; i++, l++) a[l] += x[i];                            \
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); \
  }
TG__BOTH(ROWSUM)
#undef ROWSUM

/* Broadcasting: the rule and the walk that every broadcasting op shares. */
int tg__bcast_shape(const char *fn, const char *const *names,
                    tg_tensor *const *in, int n, tg_outshape *out) {
  int nd = 0;
  for (int k = 0; k < n; k++)
    if (in[k]->ndim > nd) nd = in[k]->ndim;
  out->ndim = nd;
  for (int i = 1; i <= nd; i++) { /* the i-th dimension from the right */
    int64_t size = 1;
    bool ok = true;
    for (int k = 0; k < n && ok; k++) {
      if (in[k]->ndim < i) continue;
      int64_t s = in[k]->shape[in[k]->ndim - i];
      if (s == 1) continue;
      if (size == 1)
        size = s;
      else
        ok = s == size;
    }
    if (!ok) {
      char msg[512], sb[96];
      size_t len = 0;
      for (int k = 0; k < n && len < sizeof msg; k++)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s is %s",
                                k ? ", " : "", names[k],
                                tg__shape_str(in[k], sb));
      return tg__err(TG_ESHAPE, "%s: shapes do not broadcast: %s", fn, msg);
    }
    out->shape[nd - i] = size;
  }
  return TG_OK;
}

int tg__rule_bcast2(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                    tg_outshape *out) {
  (void)a;
  static const char *const names[] = {"a", "b"};
  return tg__bcast_shape(fn, names, in, 2, out);
}

void tg__bcast_plan(tg__bcast *p, const tg_tensor *out, tg_tensor *const *in,
                    int n) {
  memset(p, 0, sizeof *p);
  p->n = n;
  int64_t st[TG__BC_MAX][TG_MAX_DIMS];
  /* Each input's strides in the result's index space. */
  for (int k = 0; k < n; k++) {
    const tg_tensor *x = in[k];
    int64_t s = 1;
    for (int d = out->ndim - 1; d >= 0; d--) {
      int xd = d - (out->ndim - x->ndim);
      bool has = xd >= 0 && x->shape[xd] != 1;
      st[k][d] = has ? s : 0;
      if (xd >= 0) s *= x->shape[xd];
    }
  }
  /* Drop the size-1 dimensions, and merge a dimension into the one before
   * it where every input steps across both as across one. */
  int nd = 0;
  for (int d = 0; d < out->ndim; d++) {
    if (out->shape[d] == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < n && merge; k++)
      merge = p->st[k][nd - 1] == st[k][d] * out->shape[d];
    if (merge) {
      p->shape[nd - 1] *= out->shape[d];
      for (int k = 0; k < n; k++) p->st[k][nd - 1] = st[k][d];
    } else {
      p->shape[nd] = out->shape[d];
      for (int k = 0; k < n; k++) p->st[k][nd] = st[k][d];
      nd++;
    }
  }
  if (nd == 0) { /* one element: every input is a single one too */
    p->shape[0] = 1;
    nd = 1;
  }
  p->ndim = nd;
  p->len = p->shape[nd - 1];
  p->rows = 1;
  for (int d = 0; d + 1 < nd; d++) p->rows *= p->shape[d];
  if (p->len == 0) p->rows = 0;
  for (int k = 0; k < n; k++) p->inner[k] = p->st[k][nd - 1];
}
