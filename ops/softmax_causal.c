/* ops/softmax_causal.c: attention's scaled causal softmax in one pass.
 * x [..., Tq, Tk], c = args f[0], o = Tk - Tq >= 0: row i of each matrix
 * sees columns j <= i + o (queries are the last Tq of Tk positions), and
 *   y_ij = exp(c x_ij - m_i) / sum_{j' <= i+o} exp(c x_ij' - m_i),
 *   y_ij = 0 for j > i + o,
 *   dx_ij = c y_ij (g_ij - sum_j' g_ij' y_ij') (0 where masked),
 * m_i the row's maximum of c x over the visible columns. It replaces
 * scale -> where(mask, ., -1e9) -> softmax_axis: one read and one write
 * instead of three of each, no mask tensor, and the masked entries are
 * never exponentiated. Saves nothing but its output. Rows are independent,
 * so they are split over threads with results the same for any split. */
#include <tgmath.h>

#include "op.h"
#include "softmax_row.h"

typedef struct {
  const void *x, *g;
  void *y, *dx;
  double c;
  int64_t tq, tk;
} job;

/* The row loops once per vector path (TG__SIMD_EACH), each with the row
 * helpers inlined for its instruction set; every path gives the same
 * bits. Rows [r0, r1) of all the matrices' rows; row r is row r % tq of
 * its matrix and sees its first r % tq + tk - tq + 1 columns. */
#define KERNELS(ISA, T, S)                                                   \
  TG__TARGET_##ISA static void fwd_##S##_##ISA(void *p, int64_t r0,          \
                                               int64_t r1) {                 \
    const job *jb = p;                                                       \
    const T c = (T)jb->c;                                                    \
    const int64_t tq = jb->tq, tk = jb->tk;                                  \
    for (int64_t r = r0; r < r1; r++) {                                      \
      const T *restrict x = (const T *)jb->x + r * tk;                       \
      T *restrict y = (T *)jb->y + r * tk;                                   \
      const int64_t n = r % tq + tk - tq + 1;                                \
      softmax_row_##S(x, y, n, c, NULL, TG__SM_MASKED_##ISA);                \
      for (int64_t j = n; j < tk; j++) y[j] = 0;                             \
    }                                                                        \
  }                                                                          \
  TG__TARGET_##ISA static void bwd_##S##_##ISA(void *p, int64_t r0,          \
                                               int64_t r1) {                 \
    const job *jb = p;                                                       \
    const T c = (T)jb->c;                                                    \
    const int64_t tq = jb->tq, tk = jb->tk;                                  \
    for (int64_t r = r0; r < r1; r++) {                                      \
      const T *restrict y = (const T *)jb->y + r * tk;                       \
      const T *restrict g = (const T *)jb->g + r * tk;                       \
      T *restrict dx = (T *)jb->dx + r * tk;                                 \
      softmax_row_bwd_##S(y, g, dx, r % tq + tk - tq + 1, c,                 \
                          TG__SM_MASKED_##ISA);                              \
    }                                                                        \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  TG__RANGE_TABLE(fwd, S)                                                    \
  TG__RANGE_TABLE(bwd, S)
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

static void run(job *jb, const tg_node *n, bool fwd) {
  const tg_tensor *y = n->out;
  jb->c = n->args.f[0];
  jb->tq = y->shape[y->ndim - 2];
  jb->tk = y->shape[y->ndim - 1];
  int path = tg__simd_path();
  tg__range_fn fn = y->dtype == TG_F32 ? (fwd ? fwd_tab_f32 : bwd_tab_f32)[path]
                                       : (fwd ? fwd_tab_f64 : bwd_tab_f64)[path];
  int64_t rows = y->numel / jb->tk;
  tg__par_range(rows, tg__par_rows(jb->tk), fn, jb);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96];
  const tg_tensor *x = in[0];
  if (x->ndim < 2)
    return tg__err(TG_ESHAPE, "%s: a must be [..., Tq, Tk], at least 2-D: a is %s",
                   fn, tg__shape_str(x, sa));
  int64_t tq = x->shape[x->ndim - 2], tk = x->shape[x->ndim - 1];
  if (tq > tk)
    return tg__err(TG_ESHAPE,
                   "%s: more queries than keys (Tq %lld > Tk %lld) would leave "
                   "rows with nothing visible: a is %s",
                   fn, (long long)tq, (long long)tk, tg__shape_str(x, sa));
  if (!isfinite(a->f[0]))
    return tg__err(TG_EINVAL, "%s: the scale is %g; it must be finite (a is %s)",
                   fn, a->f[0], tg__shape_str(x, sa));
  return tg__rule_same(fn, in, a, out);
}

static int forward(tg_tape *t, tg_node *n) {
  (void)t;
  int rc = tg__simd_check("tg_softmax_causal");
  if (rc) return rc;
  if (!n->out->numel) return TG_OK;
  job jb = {.x = n->in[0]->data, .y = n->out->data};
  run(&jb, n, true);
  return TG_OK;
}

static void backward(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx || !n->out->numel) return;
  job jb = {.y = n->out->data, .g = n->out->grad, .dx = dx};
  run(&jb, n, false);
}

static const tg_opcase cases[] = {
    {.ndim = {2}, .shape = {{4, 4}}, .args = {.f = {0.5}}},
    {.ndim = {2}, .shape = {{3, 5}}, .args = {.f = {1.25}}}, /* Tq < Tk */
    {.ndim = {2}, .shape = {{1, 1}}, .args = {.f = {2}}},
    {.ndim = {3}, .shape = {{2, 3, 3}}, .args = {.f = {-0.75}}},
    {.ndim = {4}, .shape = {{2, 2, 2, 5}}, .args = {.f = {0.35}}},
    /* more columns than a vector, with a ragged tail */
    {.ndim = {2}, .shape = {{2, 19}}, .args = {.f = {0.3}}},
    {.ndim = {1}, .shape = {{4}}, .args = {.f = {1}}, .status = TG_ESHAPE,
     .msg = "at least 2-D: a is [4]"},
    {.ndim = {3}, .shape = {{2, 4, 3}}, .args = {.f = {1}}, .status = TG_ESHAPE,
     .msg = "Tq 4 > Tk 3"},
    {.ndim = {2}, .shape = {{2, 2}}, .args = {.f = {INFINITY}},
     .status = TG_EINVAL, .msg = "the scale is inf"},
    {.ndim = {2}, .shape = {{2, 2}}, .args = {.f = {NAN}}, .status = TG_EINVAL,
     .msg = "must be finite (a is [2,2])"},
};

const tg_opdef tg__op_softmax_causal = {.name = "softmax_causal", .n_in = 1,
                                        .rule = rule, .forward = forward,
                                        .backward = backward, TG__CASES(cases)};

tg_tensor *tg_softmax_causal(tg_tape *t, tg_tensor *a, double scale) {
  return TG__APPLY(t, softmax_causal, &(tg_opargs){.f = {scale}}, a);
}
