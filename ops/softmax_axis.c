/* ops/softmax_axis.c: softmax and log-softmax along any axis. Viewing x as
 * [outer, len, inner] around the axis, each of the outer * inner lines of
 * len elements, with m its maximum and s = sum_k exp(x_k - m):
 *   softmax_axis: y = exp(x - m) / s,      dx = y * (g - sum_k g_k y_k)
 *   log_softmax:  y = x - m - ln s,        dx = g - exp(y) * sum_k g_k
 * Both save nothing but their output. The line is contiguous when the axis
 * is the last one (inner 1), a row whose loops vectorise; otherwise the
 * lines are strided and are walked CHUNK of them at a time, side by side,
 * so the inner loops run along memory. Both passes split the outer blocks
 * over threads, each computed wholly by one, so the result does not depend
 * on the split. The loops are compiled once per vector path
 * (TG__SIMD_EACH), all giving the same bits (softmax_row.h). A 0-d input
 * is one line of one element (axis 0 or -1, as in PyTorch). */
#include <tgmath.h>

#include "op.h"
#include "softmax_row.h"

#define CHUNK 16

typedef struct {
  const void *x, *g; /* x for the forward, g (and y, dx) for the backward */
  void *y, *dx;
  int64_t len, inner;
  bool logs;
} job;

#define KERNELS(ISA, T, S)                                                    \
  TG__VINLINE void logsoftmax_row_##S##_##ISA(const T *restrict x,           \
                                              T *restrict y, int64_t len) {   \
    const bool mt = TG__SM_MASKED_##ISA;                                      \
    T m = tg__sm_max_##S(x, len, 1, mt);                                      \
    T ls = log(tg__sm_expsum_##S(x, y, len, 1, m, true, mt));                 \
    TG__SIMD                                                                  \
    for (int64_t k = 0; k < len; k++) y[k] -= ls;                             \
  }                                                                           \
  /* w <= CHUNK lines side by side, line i at x[i], element k at            \
   * x[k * inner + i]. */                                                     \
  TG__TARGET_##ISA static void lines_fwd_##S##_##ISA(                         \
      const T *restrict x, T *restrict y, int64_t len, int64_t inner,         \
      int64_t w, bool logs) {                                                 \
    T m[CHUNK], s[CHUNK];                                                     \
    for (int64_t i = 0; i < w; i++) {                                         \
      m[i] = x[i];                                                            \
      s[i] = 0;                                                               \
    }                                                                         \
    for (int64_t k = 1; k < len; k++) {                                       \
      const T *xk = x + k * inner;                                            \
      for (int64_t i = 0; i < w; i++) m[i] = xk[i] > m[i] ? xk[i] : m[i];     \
    }                                                                         \
    for (int64_t k = 0; k < len; k++) {                                       \
      const T *xk = x + k * inner;                                            \
      T *yk = y + k * inner;                                                  \
      for (int64_t i = 0; i < w; i++) {                                       \
        T e = tg__smexp_##S(xk[i] - m[i]);                                    \
        s[i] += e;                                                            \
        yk[i] = logs ? xk[i] - m[i] : e;                                      \
      }                                                                       \
    }                                                                         \
    if (logs)                                                                 \
      for (int64_t i = 0; i < w; i++) s[i] = log(s[i]);                       \
    for (int64_t k = 0; k < len; k++) {                                       \
      T *yk = y + k * inner;                                                  \
      if (logs)                                                               \
        for (int64_t i = 0; i < w; i++) yk[i] -= s[i];                        \
      else                                                                    \
        for (int64_t i = 0; i < w; i++) yk[i] /= s[i];                        \
    }                                                                         \
  }                                                                           \
  /* outer blocks [o0, o1) */                                                \
  TG__TARGET_##ISA static void fwd_##S##_##ISA(void *p, int64_t o0,          \
                                               int64_t o1) {                 \
    const job *jb = p;                                                        \
    const T *x = jb->x;                                                       \
    T *y = jb->y;                                                             \
    const int64_t len = jb->len, inner = jb->inner;                           \
    const bool logs = jb->logs;                                               \
    for (int64_t o = o0; o < o1; o++) {                                       \
      const T *xo = x + o * len * inner;                                      \
      T *yo = y + o * len * inner;                                            \
      if (inner == 1) {                                                       \
        if (logs)                                                             \
          logsoftmax_row_##S##_##ISA(xo, yo, len);                            \
        else                                                                  \
          softmax_row_##S(xo, yo, len, 1, NULL, TG__SM_MASKED_##ISA);         \
        continue;                                                             \
      }                                                                       \
      for (int64_t i0 = 0; i0 < inner; i0 += CHUNK)                           \
        lines_fwd_##S##_##ISA(xo + i0, yo + i0, len, inner,                   \
                              inner - i0 < CHUNK ? inner - i0 : CHUNK, logs); \
    }                                                                         \
  }                                                                           \
  /* exp(y) with y <= 0 is the softmax, which tg__smexp gives as the       \
   * forward computed it (for float, without a libm call per element). */    \
  TG__VINLINE void logsoftmax_row_bwd_##S##_##ISA(                           \
      const T *restrict y, const T *restrict g, T *restrict dx, int64_t len) { \
    T d = tg__sm_dot_##S(g, g, len, false, TG__SM_MASKED_##ISA);             \
    TG__SM_SIMD_##S(TG__SIMD)                                                \
    for (int64_t k = 0; k < len; k++)                                        \
      dx[k] += g[k] - tg__smexp_##S(y[k]) * d;                               \
  }                                                                          \
  /* softmax: d = sum_k g_k y_k, dx_k += y_k (g_k - d); log_softmax:        \
   * d = sum_k g_k, dx_k += g_k - exp(y_k) d. */                             \
  TG__TARGET_##ISA static void lines_bwd_##S##_##ISA(                         \
      const T *restrict y, const T *restrict g, T *restrict dx, int64_t len,  \
      int64_t inner, int64_t w, bool logs) {                                  \
    T d[CHUNK];                                                               \
    for (int64_t i = 0; i < w; i++) d[i] = 0;                                 \
    for (int64_t k = 0; k < len; k++) {                                       \
      const T *yk = y + k * inner, *gk = g + k * inner;                       \
      if (logs)                                                               \
        for (int64_t i = 0; i < w; i++) d[i] += gk[i];                        \
      else                                                                    \
        for (int64_t i = 0; i < w; i++) d[i] += gk[i] * yk[i];                \
    }                                                                         \
    for (int64_t k = 0; k < len; k++) {                                       \
      const T *yk = y + k * inner, *gk = g + k * inner;                       \
      T *dk = dx + k * inner;                                                 \
      if (logs)                                                               \
        for (int64_t i = 0; i < w; i++)                                      \
          dk[i] += gk[i] - tg__smexp_##S(yk[i]) * d[i];                       \
      else                                                                    \
        for (int64_t i = 0; i < w; i++) dk[i] += yk[i] * (gk[i] - d[i]);      \
    }                                                                         \
  }                                                                           \
  /* outer blocks [o0, o1) */                                                \
  TG__TARGET_##ISA static void bwd_##S##_##ISA(void *p, int64_t o0,          \
                                               int64_t o1) {                 \
    const job *jb = p;                                                        \
    const T *y = jb->y, *g = jb->g;                                           \
    T *dx = jb->dx;                                                           \
    const int64_t len = jb->len, inner = jb->inner;                           \
    const bool logs = jb->logs;                                               \
    for (int64_t o = o0; o < o1; o++) {                                       \
      int64_t off = o * len * inner;                                          \
      if (inner == 1) {                                                       \
        if (logs)                                                             \
          logsoftmax_row_bwd_##S##_##ISA(y + off, g + off, dx + off, len);    \
        else                                                                  \
          softmax_row_bwd_##S(y + off, g + off, dx + off, len, 1,             \
                              TG__SM_MASKED_##ISA);                           \
        continue;                                                             \
      }                                                                       \
      for (int64_t i0 = 0; i0 < inner; i0 += CHUNK)                           \
        lines_bwd_##S##_##ISA(y + off + i0, g + off + i0, dx + off + i0, len, \
                              inner, inner - i0 < CHUNK ? inner - i0 : CHUNK, \
                              logs);                                          \
    }                                                                         \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  TG__RANGE_TABLE(fwd, S)                                                    \
  TG__RANGE_TABLE(bwd, S)
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  char sa[96];
  const tg_tensor *x = in[0];
  int64_t lim = x->ndim ? x->ndim : 1;
  if (a->i[0] < -lim || a->i[0] >= lim)
    return tg__err(TG_ERANGE, "%s: axis %lld is out of range for a of %s", fn,
                   (long long)a->i[0], tg__shape_str(x, sa));
  return tg__rule_same(fn, in, a, out);
}

static void split(const tg_node *n, int64_t *outer, int64_t *len,
                  int64_t *inner) {
  const tg_tensor *x = n->in[0];
  *outer = *len = *inner = 1;
  if (!x->ndim) return;
  int ax = (int)(n->args.i[0] < 0 ? n->args.i[0] + x->ndim : n->args.i[0]);
  for (int d = 0; d < ax; d++) *outer *= x->shape[d];
  *len = x->shape[ax];
  for (int d = ax + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

static void run(job *jb, const tg_node *n, bool logs, bool fwd) {
  int64_t outer;
  jb->logs = logs;
  split(n, &outer, &jb->len, &jb->inner);
  int path = tg__simd_path();
  tg__range_fn fn = n->out->dtype == TG_F32
                        ? (fwd ? fwd_tab_f32 : bwd_tab_f32)[path]
                        : (fwd ? fwd_tab_f64 : bwd_tab_f64)[path];
  int64_t min_outer = TG__PAR_ELEMS / (jb->len * jb->inner);
  tg__par_range(outer, min_outer > 0 ? min_outer : 1, fn, jb);
}

static int forward(tg_node *n, bool logs) {
  int rc = tg__simd_check(logs ? "tg_log_softmax" : "tg_softmax_axis");
  if (rc) return rc;
  if (!n->out->numel) return TG_OK; /* and a line of 0 has no maximum */
  job jb = {.x = n->in[0]->data, .y = n->out->data};
  run(&jb, n, logs, true);
  return TG_OK;
}

static void backward(const tg_node *n, bool logs) {
  void *dx = tg__gin(n, 0);
  if (!dx || !n->out->numel) return;
  job jb = {.y = n->out->data, .g = n->out->grad, .dx = dx};
  run(&jb, n, logs, false);
}

static int forward_softmax(tg_tape *t, tg_node *n) {
  (void)t;
  return forward(n, false);
}
static int forward_log(tg_tape *t, tg_node *n) {
  (void)t;
  return forward(n, true);
}
static void backward_softmax(const tg_node *n) { backward(n, false); }
static void backward_log(const tg_node *n) { backward(n, true); }

static const tg_opcase cases[] = {
    {.ndim = {1}, .shape = {{6}}, .args = {.i = {0}}},
    {.ndim = {1}, .shape = {{1}}, .args = {.i = {-1}}},
    {.ndim = {0}, .args = {.i = {0}}},
    {.ndim = {0}, .args = {.i = {-1}}},
    {.ndim = {2}, .shape = {{4, 5}}, .args = {.i = {0}}},
    {.ndim = {2}, .shape = {{4, 5}}, .args = {.i = {1}}},
    {.ndim = {2}, .shape = {{4, 1}}, .args = {.i = {1}}},
    {.ndim = {3}, .shape = {{2, 3, 4}}, .args = {.i = {-2}}},
    {.ndim = {3}, .shape = {{2, 1, 4}}, .args = {.i = {0}}},
    {.ndim = {4}, .shape = {{2, 3, 2, 3}}, .args = {.i = {1}}},
    /* more lines than one chunk, and a ragged last chunk */
    {.ndim = {3}, .shape = {{1, 2, 17}}, .args = {.i = {1}}},
    {.ndim = {2}, .shape = {{4, 5}}, .args = {.i = {2}}, .status = TG_ERANGE,
     .msg = "axis 2 is out of range for a of [4,5]"},
    {.ndim = {2}, .shape = {{4, 5}}, .args = {.i = {-3}}, .status = TG_ERANGE,
     .msg = "axis -3 is out of range"},
    {.ndim = {0}, .args = {.i = {1}}, .status = TG_ERANGE,
     .msg = "axis 1 is out of range for a of []"},
};

const tg_opdef tg__op_softmax_axis = {.name = "softmax_axis", .n_in = 1,
                                      .rule = rule, .forward = forward_softmax,
                                      .backward = backward_softmax,
                                      TG__CASES(cases)};
const tg_opdef tg__op_log_softmax = {.name = "log_softmax", .n_in = 1,
                                     .rule = rule, .forward = forward_log,
                                     .backward = backward_log,
                                     TG__CASES(cases)};

tg_tensor *tg_softmax_axis(tg_tape *t, tg_tensor *a, int axis) {
  return TG__APPLY(t, softmax_axis, &(tg_opargs){.i = {axis}}, a);
}
tg_tensor *tg_log_softmax(tg_tape *t, tg_tensor *a, int axis) {
  return TG__APPLY(t, log_softmax, &(tg_opargs){.i = {axis}}, a);
}
