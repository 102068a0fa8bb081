/* ops/softmax_nll.c: the fused softmax + negative log-likelihood loss, mean
 * over the N rows of logits z[N,C]:
 *   L = (1/N) sum_i sum_j y_ij (lse_i - z_ij),  lse_i = ln sum_j e^z_ij,
 * with y one-hot (int32 class indices: L = (1/N) sum_i lse_i - z_i,y_i) or
 * rows of probabilities. lse is computed with the row maximum subtracted, so
 * logits of +-1000 give a finite loss. Forward saves p = softmax(z) (and
 * lse, and the class indices), so backward needs no exp:
 *   dL/dz_ij = (p_ij sum_k y_ik - y_ij) / N   (= (p - y)/N for proper rows)
 *   dL/dy_ij = (lse_i - z_ij) / N              (probability targets only)
 * Two ops in the list, one per target kind; tg_softmax_nll picks. */
#include <string.h>
#include <tgmath.h>

#include "../src/internal.h"
#include "softmax_row.h"

/* Writes p and lse for every row; returns sum_i sum_j y_ij (lse_i - z_ij)
 * with y given as classes (cls) or as rows (y). */
#define KERNELS(T, S)                                                        \
  static double forward_##S(const T *restrict z, const int32_t *cls,         \
                            const T *y, T *restrict p, T *restrict lse,      \
                            int64_t rows, int64_t cols) {                    \
    double total = 0;                                                        \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *zr = z + r * cols;                                            \
      T l;                                                                   \
      softmax_row_##S(zr, p + r * cols, cols, &l);                           \
      lse[r] = l;                                                            \
      if (cls)                                                               \
        total += (double)(l - zr[cls[r]]);                                   \
      else                                                                   \
        for (int64_t j = 0; j < cols; j++)                                   \
          total += (double)(y[r * cols + j] * (l - zr[j]));                  \
    }                                                                        \
    return total;                                                            \
  }                                                                          \
  static void backward_##S(const T *restrict p, const T *restrict lse,       \
                           const T *restrict z, const int32_t *cls,          \
                           const T *y, T *dz, T *dy, T g, int64_t rows,      \
                           int64_t cols) {                                   \
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
TG__BOTH(KERNELS)

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
  if (z->dtype == TG_F32)
    backward_f32(sv->p, sv->lse, z->data, sv->cls, ydata, dz, dy,
                 *(const float *)n->out->grad / (float)rows, rows, cols);
  else
    backward_f64(sv->p, sv->lse, z->data, sv->cls, ydata, dz, dy,
                 *(const double *)n->out->grad / (double)rows, rows, cols);
}

static tg_tensor *call(tg_tape *t, tg_tensor *const *in, const tg_opcase *c) {
  (void)c;
  return tg_softmax_nll(t, in[0], in[1]);
}

static const tg_opcase cases_class[] = {
    {.ndim = {2, 1}, .shape = {{4, 3}, {4}}, .domain = {0, TG__DOM_CLASS}, .i = 3},
    {.ndim = {2, 1}, .shape = {{1, 10}, {1}}, .domain = {0, TG__DOM_CLASS}, .i = 10},
    {.ndim = {2, 1}, .shape = {{6, 2}, {6}}, .domain = {0, TG__DOM_CLASS}, .i = 2},
};
static const tg_opcase cases_prob[] = {
    {.ndim = {2, 2}, .shape = {{4, 3}, {4, 3}}, .domain = {0, TG__DOM_PROB}},
    {.ndim = {2, 2}, .shape = {{2, 7}, {2, 7}}, .domain = {0, TG__DOM_PROB}},
};

const tg_opdef tg__op_softmax_nll = {"softmax_nll", 2, backward, call,
                                     cases_class, 3};
const tg_opdef tg__op_softmax_nll_prob = {"softmax_nll_prob", 2, backward, call,
                                          cases_prob, 2};

tg_tensor *tg_softmax_nll(tg_tape *t, tg_tensor *logits, tg_tensor *target) {
  static const char fn[] = "tg_softmax_nll";
  tg_tensor *in[2] = {logits, target};
  if (!logits || !target) return NULL;
  if (tg__check_inputs(fn, t, in, 2) || tg__check_float(fn, logits, "logits") ||
      tg__check_2d(fn, logits, "logits"))
    return NULL;
  bool cls = target->dtype == TG_I32;
  if (cls ? tg__check_classes(fn, logits, target)
          : tg__check_same(fn, logits, target))
    return NULL;
  tg_tensor *out = tg__emit_scalar(
      t, cls ? &tg__op_softmax_nll : &tg__op_softmax_nll_prob, logits->dtype,
      in, 2);
  if (!out) return NULL;
  int64_t rows = logits->shape[0], cols = logits->shape[1];
  size_t es = tg__dtype_size(logits->dtype);
  saved_t *sv = tg__arena_alloc(t, sizeof *sv);
  if (sv) {
    sv->p = tg__arena_alloc(t, (size_t)logits->numel * es);
    sv->lse = tg__arena_alloc(t, (size_t)rows * es);
    sv->cls = cls ? tg__arena_alloc(t, (size_t)rows * sizeof(int32_t)) : NULL;
  }
  if (!sv || !sv->p || !sv->lse || (cls && !sv->cls)) {
    tg__err(TG_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  if (cls) memcpy(sv->cls, target->data, (size_t)rows * sizeof(int32_t));
  double total;
  if (logits->dtype == TG_F32)
    total = forward_f32(logits->data, sv->cls, cls ? NULL : target->data, sv->p,
                        sv->lse, rows, cols);
  else
    total = forward_f64(logits->data, sv->cls, cls ? NULL : target->data, sv->p,
                        sv->lse, rows, cols);
  if (logits->dtype == TG_F32)
    *(float *)out->data = (float)(total / (double)rows);
  else
    *(double *)out->data = total / (double)rows;
  tg_node *nd = tg__node_of(out);
  if (nd) nd->saved = sv;
  return tg__done(t, out, fn);
}
