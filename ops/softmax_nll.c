/* ops/softmax_nll.c: the fused softmax + negative log-likelihood loss, mean
 * over the N rows of logits z[N,C]:
 *   L = (1/N) sum_i sum_j y_ij (lse_i - z_ij),  lse_i = ln sum_j e^z_ij,
 * with y one-hot (int32 class indices: L = (1/N) sum_i lse_i - z_i,y_i) or
 * rows of probabilities. lse is computed with the row maximum subtracted, so
 * logits of +-1000 give a finite loss. Forward saves p = softmax(z) (and
 * lse, and the class indices), so backward needs no exp:
 *   dL/dz_ij = (p_ij sum_k y_ik - y_ij) / N   (= (p - y)/N for proper rows)
 *   dL/dy_ij = (lse_i - z_ij) / N              (probability targets only)
 * Two ops in the list, one per target kind; tg_softmax_nll picks by the
 * target's dtype. */
#include <string.h>
#include <tgmath.h>

#include "op.h"
#include "softmax_row.h"

/* Once per vector path (TG__SIMD_EACH), all giving the same bits. Forward
 * writes p and lse for every row and returns sum_i sum_j y_ij (lse_i -
 * z_ij) with y given as classes (cls) or as rows (y); its sums over a row
 * other than the softmax's run in order. */
#define KERNELS(ISA, T, S)                                                   \
  TG__TARGET_##ISA static double forward_##S##_##ISA(                        \
      const T *restrict z, const int32_t *cls, const T *y, T *restrict p,    \
      T *restrict lse, int64_t rows, int64_t cols) {                         \
    double total = 0;                                                        \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *zr = z + r * cols;                                            \
      T l;                                                                   \
      softmax_row_##S(zr, p + r * cols, cols, 1, &l, TG__SM_MASKED_##ISA);   \
      lse[r] = l;                                                            \
      if (cls)                                                               \
        total += (double)(l - zr[cls[r]]);                                   \
      else                                                                   \
        for (int64_t j = 0; j < cols; j++)                                   \
          total += (double)(y[r * cols + j] * (l - zr[j]));                  \
    }                                                                        \
    return total;                                                            \
  }                                                                          \
  TG__TARGET_##ISA static void backward_##S##_##ISA(                         \
      const T *restrict p, const T *restrict lse, const T *restrict z,       \
      const int32_t *cls, const T *y, T *dz, T *dy, T g, int64_t rows,       \
      int64_t cols) {                                                        \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *pr = p + r * cols;                                            \
      if (cls) {                                                             \
        if (dz) {                                                            \
          for (int64_t j = 0; j < cols; j++) dz[r * cols + j] += g * pr[j];  \
          dz[r * cols + cls[r]] -= g;                                        \
        }                                                                    \
        continue;                                                            \
      }                                                                      \
      const T *yr = y + r * cols;                                            \
      if (dz) {                                                              \
        T ysum = 0;                                                          \
        for (int64_t j = 0; j < cols; j++) ysum += yr[j];                    \
        for (int64_t j = 0; j < cols; j++)                                   \
          dz[r * cols + j] += g * (pr[j] * ysum - yr[j]);                    \
      }                                                                      \
      if (dy)                                                                \
        for (int64_t j = 0; j < cols; j++)                                   \
          dy[r * cols + j] += g * (lse[r] - z[r * cols + j]);                \
    }                                                                        \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  static double (*const forward_tab_##S[TG__SIMD_NPATHS])(                   \
      const T *restrict, const int32_t *, const T *, T *restrict,            \
      T *restrict, int64_t, int64_t) = TG__SIMD_TABLE(forward_##S);          \
  static void (*const backward_tab_##S[TG__SIMD_NPATHS])(                    \
      const T *restrict, const T *restrict, const T *restrict,               \
      const int32_t *, const T *, T *, T *, T, int64_t, int64_t) =           \
      TG__SIMD_TABLE(backward_##S);
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

/* What forward keeps: the probabilities, each row's log-sum-exp, and a copy
 * of the class indices it checked (backward must not trust the caller's
 * buffer again: it may have been refilled since). */
typedef struct {
  void *p, *lse;
  int32_t *cls; /* NULL for probability targets */
} saved_t;

static void backward(const tg_node *n) {
  const tg_tensor *z = n->in[0], *y = n->in[1];
  const saved_t *sv = n->saved;
  int64_t rows = z->shape[0], cols = z->shape[1];
  void *dz = tg__gin(n, 0), *dy = sv->cls ? NULL : tg__gin(n, 1);
  const void *ydata = sv->cls ? NULL : y->data;
  int path = tg__simd_path();
  if (z->dtype == TG_F32)
    backward_tab_f32[path](sv->p, sv->lse, z->data, sv->cls, ydata, dz, dy,
                 *(const float *)n->out->grad / (float)rows, rows, cols);
  else
    backward_tab_f64[path](sv->p, sv->lse, z->data, sv->cls, ydata, dz, dy,
                 *(const double *)n->out->grad / (double)rows, rows, cols);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  (void)a;
  int rc = tg__check_2d(fn, in[0], "logits");
  if (!rc)
    rc = in[1]->dtype == TG_I32 ? tg__check_classes(fn, in[0], in[1])
                                : tg__check_same(fn, in[0], in[1]);
  tg__out_scalar(out, in[0]->dtype);
  return rc;
}

static int forward(tg_tape *t, tg_node *n) {
  int rc = tg__simd_check("tg_softmax_nll");
  if (rc) return rc;
  const tg_tensor *logits = n->in[0], *target = n->in[1];
  bool cls = target->dtype == TG_I32;
  int64_t rows = logits->shape[0], cols = logits->shape[1];
  size_t es = tg__dtype_size(logits->dtype);
  saved_t *sv = tg__arena_alloc(t, sizeof *sv);
  if (sv) {
    sv->p = tg__arena_alloc(t, (size_t)logits->numel * es);
    sv->lse = tg__arena_alloc(t, (size_t)rows * es);
    sv->cls = cls ? tg__arena_alloc(t, (size_t)rows * sizeof(int32_t)) : NULL;
  }
  if (!sv || !sv->p || !sv->lse || (cls && !sv->cls))
    return tg__err(TG_ENOMEM, "tg_softmax_nll: out of memory");
  if (cls) memcpy(sv->cls, target->data, (size_t)rows * sizeof(int32_t));
  const void *y = cls ? NULL : target->data;
  double total;
  int path = tg__simd_path();
  if (logits->dtype == TG_F32)
    total = forward_tab_f32[path](logits->data, sv->cls, y, sv->p, sv->lse,
                                  rows, cols);
  else
    total = forward_tab_f64[path](logits->data, sv->cls, y, sv->p, sv->lse,
                                  rows, cols);
  if (logits->dtype == TG_F32)
    *(float *)n->out->data = (float)(total / (double)rows);
  else
    *(double *)n->out->data = total / (double)rows;
  n->saved = sv;
  return TG_OK;
}

static const tg_opcase cases_class[] = {
    {.ndim = {2, 1}, .shape = {{4, 3}, {4}}, .domain = {0, TG__DOM_CLASS}, .classes = 3},
    {.ndim = {2, 1}, .shape = {{1, 10}, {1}}, .domain = {0, TG__DOM_CLASS}, .classes = 10},
    {.ndim = {2, 1}, .shape = {{6, 2}, {6}}, .domain = {0, TG__DOM_CLASS}, .classes = 2},
};
static const tg_opcase cases_prob[] = {
    {.ndim = {2, 2}, .shape = {{4, 3}, {4, 3}}, .domain = {0, TG__DOM_PROB}},
    {.ndim = {2, 2}, .shape = {{2, 7}, {2, 7}}, .domain = {0, TG__DOM_PROB}},
};

const tg_opdef tg__op_softmax_nll = {
    .name = "softmax_nll", .n_in = 2, .in_names = {"logits", "target"},
    .flags = TG__IN_INT(1), .rule = rule, .forward = forward,
    .backward = backward, TG__CASES(cases_class)};
const tg_opdef tg__op_softmax_nll_prob = {
    .name = "softmax_nll_prob", .api = "tg_softmax_nll", .n_in = 2,
    .in_names = {"logits", "target"}, .rule = rule, .forward = forward,
    .backward = backward, TG__CASES(cases_prob)};

tg_tensor *tg_softmax_nll(tg_tape *t, tg_tensor *logits, tg_tensor *target) {
  bool prob = target && tg__is_float(target->dtype);
  return tg__apply(t, prob ? &tg__op_softmax_nll_prob : &tg__op_softmax_nll,
                   (tg_tensor *const[]){logits, target}, NULL);
}
