/* ops/softmax.c: y = softmax(x) along the last dimension, computed with the
 * row maximum subtracted so large logits do not overflow. Saves nothing but
 * its output: dx = y * (g - sum_j g_j y_j), row by row. */
#include <tgmath.h>

#include "op.h"
#include "softmax_row.h"

#define KERNELS(T, S)                                                        \
  static void softmax_##S(const T *restrict x, T *restrict y, int64_t rows,  \
                          int64_t cols) {                                    \
    for (int64_t r = 0; r < rows; r++)                                       \
      softmax_row_##S(x + r * cols, y + r * cols, cols, 1, NULL);            \
  }                                                                          \
  static void softmax_bwd_##S(const T *restrict y, const T *restrict g,      \
                              T *restrict dx, int64_t rows, int64_t cols) {  \
    for (int64_t r = 0; r < rows; r++)                                       \
      softmax_row_bwd_##S(y + r * cols, g + r * cols, dx + r * cols, cols, 1); \
  }
TG__BOTH(KERNELS)

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  const tg_tensor *a = n->in[0];
  int64_t rows, cols;
  tg__rows_cols(a, &rows, &cols);
  if (a->dtype == TG_F32)
    softmax_f32(a->data, n->out->data, rows, cols);
  else
    softmax_f64(a->data, n->out->data, rows, cols);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  int64_t rows, cols;
  tg__rows_cols(n->out, &rows, &cols);
  if (n->out->dtype == TG_F32)
    softmax_bwd_f32(n->out->data, n->out->grad, dx, rows, cols);
  else
    softmax_bwd_f64(n->out->data, n->out->grad, dx, rows, cols);
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
