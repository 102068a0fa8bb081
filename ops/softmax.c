/* ops/softmax.c: y = softmax(x) along the last dimension, computed with the
 * row maximum subtracted so large logits do not overflow. Saves nothing but
 * its output: dx = y * (g - sum_j g_j y_j), row by row. Rows are split
 * over threads, with results the same for any split. */
#include <tgmath.h>

#include "op.h"
#include "softmax_row.h"

typedef struct {
  const void *x, *y, *g;
  void *out; /* y in forward, dx in backward */
  int64_t cols;
} job;

/* Rows [r0, r1), once per vector path (TG__SIMD_EACH), all giving the same
 * bits; rows are split over threads, each computed wholly by one. */
#define KERNELS(ISA, T, S)                                                   \
  TG__TARGET_##ISA static void fwd_##S##_##ISA(void *p, int64_t r0,          \
                                               int64_t r1) {                 \
    const job *jb = p;                                                       \
    const int64_t cols = jb->cols;                                           \
    for (int64_t r = r0; r < r1; r++)                                        \
      softmax_row_##S((const T *)jb->x + r * cols, (T *)jb->out + r * cols,  \
                      cols, 1, NULL, TG__SM_MASKED_##ISA);                   \
  }                                                                          \
  TG__TARGET_##ISA static void bwd_##S##_##ISA(void *p, int64_t r0,          \
                                               int64_t r1) {                 \
    const job *jb = p;                                                       \
    const int64_t cols = jb->cols;                                           \
    for (int64_t r = r0; r < r1; r++)                                        \
      softmax_row_bwd_##S((const T *)jb->y + r * cols,                       \
                          (const T *)jb->g + r * cols,                       \
                          (T *)jb->out + r * cols, cols, 1,                  \
                          TG__SM_MASKED_##ISA);                              \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  TG__RANGE_TABLE(fwd, S)                                                    \
  TG__RANGE_TABLE(bwd, S)
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  int rc = tg__simd_check("tg_softmax");
  if (rc) return rc;
  const tg_tensor *a = n->in[0];
  job jb = {.x = a->data, .out = n->out->data};
  int64_t rows;
  tg__rows_cols(a, &rows, &jb.cols);
  int path = tg__simd_path();
  tg__par_range(rows, tg__par_rows(jb.cols),
                a->dtype == TG_F32 ? fwd_tab_f32[path] : fwd_tab_f64[path], &jb);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  job jb = {.y = n->out->data, .g = n->out->grad, .out = dx};
  int64_t rows;
  tg__rows_cols(n->out, &rows, &jb.cols);
  int path = tg__simd_path();
  tg__par_range(rows, tg__par_rows(jb.cols),
                n->out->dtype == TG_F32 ? bwd_tab_f32[path] : bwd_tab_f64[path],
                &jb);
}

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{6}}},
    {.ndim = {2}, .shape = {{4, 5}}},
    {.ndim = {3}, .shape = {{2, 3, 4}}},
};

const tg_opdef tg__op_softmax = {.name = "softmax", .n_in = 1,
                                 .rule = tg__rule_same, .forward = forward,
                                 .backward = backward, TG__CASES(cases)};

tg_tensor *tg_softmax(tg_tape *t, tg_tensor *a) {
  return TG__APPLY(t, softmax, NULL, a);
}
