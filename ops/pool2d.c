/* ops/pool2d.c: 2-D pooling over the planes of x [N,C,H,W], PyTorch's
 * rules (floor division for the output size, dilation 1, padding at most
 * half the kernel). Window (oh, ow) covers rows oh*sh - ph .. + kh - 1 and
 * columns ow*sw - pw .. + kw - 1; positions outside x are padding.
 *   max_pool2d:  y = the window's largest element (padding counts as -inf);
 *                forward keeps its position in the plane (int32, in the
 *                arena) and backward adds g there. Ties go to the first in
 *                row-major order and a NaN wins (the last NaN), as PyTorch's
 *                CPU kernel does.
 *   avg_pool2d:  y = the window's sum / (kh kw): padding counts as zeros in
 *                the divisor (PyTorch's count_include_pad=True); backward
 *                spreads g / (kh kw) over the window's elements.
 *   global_avg_pool2d: y [N,C] = the plane's mean; dx += g / (H W).
 * They share the window rule and the walk, so they live in one file.
 * args i[0..5] = kh, kw, sh, sw, ph, pw for the first two. */
#include <math.h>

#include "op.h"

enum { KH, KW, SH, SW, PH, PW };

/* The output size of one dimension: floor((n + 2p - k) / s) + 1. */
static int64_t out_len(int64_t n, int64_t k, int64_t s, int64_t p) {
  return (n + 2 * p - k) / s + 1;
}

static int rule_pool(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                     tg_outshape *out) {
  const tg_tensor *x = in[0];
  char sx[96];
  const int64_t *i = a->i;
  if (x->ndim != 4)
    return tg__err(TG_ESHAPE, "%s: x is %s; it must be 4-D [N,C,H,W]", fn,
                   tg__shape_str(x, sx));
  /* Bounded so that no size below can overflow. */
  const int64_t big = INT32_MAX;
  if (i[KH] < 1 || i[KW] < 1 || i[KH] > big || i[KW] > big)
    return tg__err(TG_EINVAL, "%s: kernel is %lldx%lld; each side must be in "
                   "[1, 2^31)", fn, (long long)i[KH], (long long)i[KW]);
  if (i[SH] < 1 || i[SW] < 1 || i[SH] > big || i[SW] > big)
    return tg__err(TG_EINVAL, "%s: stride is %lldx%lld; each must be in "
                   "[1, 2^31)", fn, (long long)i[SH], (long long)i[SW]);
  if (i[PH] < 0 || i[PW] < 0 || i[PH] > i[KH] / 2 || i[PW] > i[KW] / 2)
    return tg__err(TG_EINVAL, "%s: padding is %lldx%lld for a kernel of "
                   "%lldx%lld; each must be in [0, kernel/2] (a wider pad "
                   "would make windows of padding only)", fn,
                   (long long)i[PH], (long long)i[PW], (long long)i[KH],
                   (long long)i[KW]);
  int64_t H = x->shape[2], W = x->shape[3];
  if (H + 2 * i[PH] < i[KH] || W + 2 * i[PW] < i[KW])
    return tg__err(TG_ESHAPE, "%s: kernel %lldx%lld is larger than the padded "
                   "input %lldx%lld (x is %s, padding %lldx%lld)", fn,
                   (long long)i[KH], (long long)i[KW],
                   (long long)(H + 2 * i[PH]), (long long)(W + 2 * i[PW]),
                   tg__shape_str(x, sx), (long long)i[PH], (long long)i[PW]);
  if (H * W > INT32_MAX) /* max pool's positions are int32 */
    return tg__err(TG_ESHAPE, "%s: x is %s; a plane of more than 2^31 - 1 "
                   "elements is not supported", fn, tg__shape_str(x, sx));
  out->ndim = 4;
  out->shape[0] = x->shape[0];
  out->shape[1] = x->shape[1];
  out->shape[2] = out_len(H, i[KH], i[SH], i[PH]);
  out->shape[3] = out_len(W, i[KW], i[SW], i[PW]);
  return TG_OK;
}

/* One window, clamped to the plane: rows [h0, h1), columns [w0, w1). With
 * padding at most half the kernel every window holds an element of x. */
typedef struct {
  int64_t h0, h1, w0, w1;
} win;

static win window(const int64_t *a, int64_t H, int64_t W, int64_t oh,
                  int64_t ow) {
  int64_t h = oh * a[SH] - a[PH], w = ow * a[SW] - a[PW];
  win r = {h < 0 ? 0 : h, h + a[KH] < H ? h + a[KH] : H, w < 0 ? 0 : w,
           w + a[KW] < W ? w + a[KW] : W};
  return r;
}

/* The largest of a 2x2 window's a, b, c, d (row-major), maxf's rule: a
 * later element wins when greater or NaN. *k, if given, gets its position
 * 0..3. Selects, not branches, so that callers' loops vectorise. */
#define MAX4(T, S)                                                           \
  static inline T max4_##S(T a, T b, T c, T d, int32_t *k) {                 \
    T best = a;                                                              \
    int32_t at = 0;                                                          \
    bool t = (b > best) | isnan(b);                                          \
    best = t ? b : best;                                                     \
    at = t ? 1 : at;                                                         \
    t = (c > best) | isnan(c);                                               \
    best = t ? c : best;                                                     \
    at = t ? 2 : at;                                                         \
    t = (d > best) | isnan(d);                                               \
    best = t ? d : best;                                                     \
    at = t ? 3 : at;                                                         \
    if (k) *k = at;                                                          \
    return best;                                                             \
  }
TG__BOTH(MAX4)
#undef MAX4

#define KERNELS(T, S)                                                        \
  /* idx may be NULL (nothing recorded: no backward). */                     \
  static void maxf_##S(const T *restrict x, T *restrict y,                   \
                       int32_t *restrict idx, int64_t planes, int64_t H,     \
                       int64_t W, int64_t OH, int64_t OW, const int64_t *a) { \
    for (int64_t p = 0; p < planes; p++) {                                   \
      const T *xp = x + p * H * W;                                           \
      for (int64_t oh = 0; oh < OH; oh++)                                    \
        for (int64_t ow = 0; ow < OW; ow++) {                                \
          win r = window(a, H, W, oh, ow);                                   \
          int64_t bi = r.h0 * W + r.w0;                                      \
          T best = -(T)INFINITY;                                             \
          for (int64_t h = r.h0; h < r.h1; h++)                              \
            for (int64_t w = r.w0; w < r.w1; w++) {                          \
              T v = xp[h * W + w];                                           \
              if (v > best || isnan(v)) {                                    \
                best = v;                                                    \
                bi = h * W + w;                                              \
              }                                                              \
            }                                                                \
          int64_t o = (p * OH + oh) * OW + ow;                               \
          y[o] = best;                                                       \
          if (idx) idx[o] = (int32_t)bi;                                     \
        }                                                                    \
    }                                                                        \
  }                                                                          \
  /* The CNNs' 2x2 window, stride 2, no padding: the same rule as maxf's    \
   * (row-major order, ties to the first, the last NaN wins) as selects    \
   * without branches, so the loop over a row vectorises: after ReLU many  \
   * windows tie at 0, and the branchy loop mispredicted on them. Every    \
   * window lies inside the plane. */                                      \
  static void maxf22_##S(const T *restrict x, T *restrict y,                 \
                         int32_t *restrict idx, int64_t planes, int64_t H,   \
                         int64_t W, int64_t OH, int64_t OW) {                \
    const int32_t w32 = (int32_t)W;                                          \
    for (int64_t p = 0; p < planes; p++) {                                   \
      const T *xp = x + p * H * W;                                           \
      for (int64_t oh = 0; oh < OH; oh++) {                                  \
        const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;                         \
        T *restrict yo = y + (p * OH + oh) * OW;                             \
        if (!idx) {                                                          \
          TG__SIMD                                                           \
          for (int64_t ow = 0; ow < OW; ow++)                                \
            yo[ow] = max4_##S(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow],        \
                              r1[2 * ow + 1], NULL);                         \
          continue;                                                          \
        }                                                                    \
        int32_t *restrict io = idx + (p * OH + oh) * OW;                     \
        const int32_t base = (int32_t)(2 * oh) * w32;                        \
        TG__SIMD                                                             \
        for (int64_t ow = 0; ow < OW; ow++) {                                \
          int32_t off;                                                       \
          yo[ow] = max4_##S(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow],          \
                            r1[2 * ow + 1], &off);                           \
          /* off: 0, 1, 2, 3 for the window's elements in row-major order */ \
          io[ow] = base + 2 * (int32_t)ow + (off & 1) + (off >> 1) * w32;    \
        }                                                                    \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  static void maxb_##S(const T *restrict g, const int32_t *restrict idx,     \
                       T *restrict dx, int64_t planes, int64_t HW,           \
                       int64_t OHW) {                                        \
    for (int64_t p = 0; p < planes; p++)                                     \
      for (int64_t o = 0; o < OHW; o++)                                      \
        dx[p * HW + idx[p * OHW + o]] += g[p * OHW + o];                     \
  }                                                                          \
  static void avgf_##S(const T *restrict x, T *restrict y, int64_t planes,   \
                       int64_t H, int64_t W, int64_t OH, int64_t OW,         \
                       const int64_t *a) {                                   \
    const double inv = 1.0 / ((double)a[KH] * (double)a[KW]);                \
    for (int64_t p = 0; p < planes; p++) {                                   \
      const T *xp = x + p * H * W;                                           \
      for (int64_t oh = 0; oh < OH; oh++)                                    \
        for (int64_t ow = 0; ow < OW; ow++) {                                \
          win r = window(a, H, W, oh, ow);                                   \
          double s = 0;                                                      \
          for (int64_t h = r.h0; h < r.h1; h++)                              \
            for (int64_t w = r.w0; w < r.w1; w++) s += xp[h * W + w];        \
          y[(p * OH + oh) * OW + ow] = (T)(s * inv);                         \
        }                                                                    \
    }                                                                        \
  }                                                                          \
  static void avgb_##S(const T *restrict g, T *restrict dx, int64_t planes,  \
                       int64_t H, int64_t W, int64_t OH, int64_t OW,         \
                       const int64_t *a) {                                   \
    const double inv = 1.0 / ((double)a[KH] * (double)a[KW]);                \
    for (int64_t p = 0; p < planes; p++) {                                   \
      T *dp = dx + p * H * W;                                                \
      for (int64_t oh = 0; oh < OH; oh++)                                    \
        for (int64_t ow = 0; ow < OW; ow++) {                                \
          win r = window(a, H, W, oh, ow);                                   \
          T gi = (T)(g[(p * OH + oh) * OW + ow] * inv);                      \
          for (int64_t h = r.h0; h < r.h1; h++)                              \
            for (int64_t w = r.w0; w < r.w1; w++) dp[h * W + w] += gi;       \
        }                                                                    \
    }                                                                        \
  }                                                                          \
  static void gapf_##S(const T *restrict x, T *restrict y, int64_t planes,   \
                       int64_t HW) {                                         \
    for (int64_t p = 0; p < planes; p++) {                                   \
      double s = 0;                                                          \
      for (int64_t k = 0; k < HW; k++) s += x[p * HW + k];                   \
      y[p] = (T)(s / (double)HW);                                            \
    }                                                                        \
  }                                                                          \
  static void gapb_##S(const T *restrict g, T *restrict dx, int64_t planes,  \
                       int64_t HW) {                                         \
    for (int64_t p = 0; p < planes; p++) {                                   \
      T gi = (T)(g[p] / (double)HW);                                         \
      for (int64_t k = 0; k < HW; k++) dx[p * HW + k] += gi;                 \
    }                                                                        \
  }
TG__BOTH(KERNELS)
#undef KERNELS

/* The sizes of a pooling node: planes N*C, the input's H, W and the
 * output's OH, OW (1 x 1 for the global pool). */
typedef struct {
  int64_t planes, H, W, OH, OW;
} dims;

static dims dims_of(const tg_node *n) {
  const tg_tensor *x = n->in[0], *y = n->out;
  dims d = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], 1, 1};
  if (y->ndim == 4) {
    d.OH = y->shape[2];
    d.OW = y->shape[3];
  }
  return d;
}

/* One pass of one op over a range of planes. Planes are independent (a
 * window never leaves its plane), so the passes split over threads by
 * plane, and each element is computed the same way whatever the split. */
enum { MAX_F, MAX_B, AVG_F, AVG_B, GAP_F, GAP_B };
typedef struct {
  int kind;
  bool f32;
  dims d;
  const int64_t *a;
  const void *x, *g; /* the input; the result's gradient */
  void *y, *dx;      /* the result; the input's gradient */
  int32_t *idx;      /* max pool's argmax positions, or NULL */
} job;

#define DISPATCH(T, S)                                                       \
  static void run_##S(const job *j, int64_t p0, int64_t np) {                \
    const dims d = j->d;                                                     \
    const int64_t HW = d.H * d.W, OHW = d.OH * d.OW;                         \
    const T *x = j->x ? (const T *)j->x + p0 * HW : NULL;                    \
    const T *g = j->g ? (const T *)j->g + p0 * OHW : NULL;                   \
    T *y = j->y ? (T *)j->y + p0 * OHW : NULL;                               \
    T *dx = j->dx ? (T *)j->dx + p0 * HW : NULL;                             \
    int32_t *idx = j->idx ? j->idx + p0 * OHW : NULL;                        \
    switch (j->kind) {                                                       \
    case MAX_F:                                                              \
      if (j->a[KH] == 2 && j->a[KW] == 2 && j->a[SH] == 2 && j->a[SW] == 2 &&  \
          j->a[PH] == 0 && j->a[PW] == 0)                                    \
        maxf22_##S(x, y, idx, np, d.H, d.W, d.OH, d.OW);                     \
      else                                                                   \
        maxf_##S(x, y, idx, np, d.H, d.W, d.OH, d.OW, j->a);                 \
      break;                                                                 \
    case MAX_B: maxb_##S(g, idx, dx, np, HW, OHW); break;                    \
    case AVG_F: avgf_##S(x, y, np, d.H, d.W, d.OH, d.OW, j->a); break;       \
    case AVG_B: avgb_##S(g, dx, np, d.H, d.W, d.OH, d.OW, j->a); break;      \
    case GAP_F: gapf_##S(x, y, np, HW); break;                               \
    case GAP_B: gapb_##S(g, dx, np, HW); break;                              \
    }                                                                        \
  }
TG__BOTH(DISPATCH)
#undef DISPATCH

static void run_range(void *ctx, int64_t p0, int64_t p1) {
  const job *j = ctx;
  if (j->f32)
    run_f32(j, p0, p1 - p0);
  else
    run_f64(j, p0, p1 - p0);
}

static void run(job *j, const tg_node *n, int kind) {
  j->kind = kind;
  j->f32 = n->out->dtype == TG_F32;
  j->d = dims_of(n);
  j->a = n->args.i;
  /* the elements a plane's pass touches, for the split's smallest chunk */
  int64_t work = j->d.H * j->d.W + j->d.OH * j->d.OW *
                 (kind == MAX_B || kind >= GAP_F ? 1 : n->args.i[KH] * n->args.i[KW]);
  int64_t min_planes = TG__PAR_ELEMS / (work > 0 ? work : 1);
  tg__par_range(j->d.planes, min_planes > 0 ? min_planes : 1, run_range, j);
}

static int forward_max(tg_tape *t, tg_node *n) {
  int32_t *idx = NULL;
  if (tg__recorded(n)) {
    if (!(idx = tg__arena_alloc(t, (size_t)n->out->numel * sizeof *idx + 1)))
      return tg__err(TG_ENOMEM,
                     "tg_max_pool2d: out of memory for the argmax positions");
    n->saved = idx;
  }
  job j = {.x = n->in[0]->data, .y = n->out->data, .idx = idx};
  run(&j, n, MAX_F);
  return TG_OK;
}

static void backward_max(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  job j = {.g = n->out->grad, .dx = dx, .idx = n->saved};
  run(&j, n, MAX_B);
}

static int forward_avg(tg_tape *t, tg_node *n) {
  (void)t;
  job j = {.x = n->in[0]->data, .y = n->out->data};
  run(&j, n, AVG_F);
  return TG_OK;
}

static void backward_avg(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  job j = {.g = n->out->grad, .dx = dx};
  run(&j, n, AVG_B);
}

/* [N,C,H,W] -> [N,C]; the mean of no elements has no value. */
static int rule_gap(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                    tg_outshape *out) {
  (void)a;
  const tg_tensor *x = in[0];
  char sx[96];
  if (x->ndim != 4)
    return tg__err(TG_ESHAPE, "%s: x is %s; it must be 4-D [N,C,H,W]", fn,
                   tg__shape_str(x, sx));
  if (x->shape[2] == 0 || x->shape[3] == 0)
    return tg__err(TG_ESHAPE, "%s: x is %s; its planes are empty, so they "
                   "have no mean", fn, tg__shape_str(x, sx));
  out->ndim = 2;
  out->shape[0] = x->shape[0];
  out->shape[1] = x->shape[1];
  return TG_OK;
}

static int forward_gap(tg_tape *t, tg_node *n) {
  (void)t;
  job j = {.x = n->in[0]->data, .y = n->out->data};
  run(&j, n, GAP_F);
  return TG_OK;
}

static void backward_gap(const tg_node *n) {
  void *dx = tg__gin(n, 0);
  if (!dx) return;
  job j = {.g = n->out->grad, .dx = dx};
  run(&j, n, GAP_B);
}

/* x [n,c,h,w], kernel kh x kw, stride sh x sw, padding ph x pw; distinct
 * values, so no two elements of a window are within a gradient check's
 * step of each other (max pool's derivative jumps where two tie). */
#define PC(n, c, h, w, kh, kw, sh, sw, ph, pw)                               \
  {.ndim = {4}, .shape = {{n, c, h, w}}, .domain = {TG__DOM_DISTINCT},       \
   .args = {.i = {kh, kw, sh, sw, ph, pw}}}
#define POOL_CASES                                                           \
  PC(2, 3, 5, 5, 2, 2, 2, 2, 0, 0),  /* odd size: the last row dropped */     \
  PC(2, 2, 6, 6, 3, 3, 1, 1, 1, 1),  /* stride 1, padding 1, even size */     \
  PC(1, 2, 4, 4, 2, 2, 1, 1, 0, 0),  /* N = 1, overlapping windows */         \
  PC(1, 1, 7, 5, 3, 2, 2, 1, 1, 0),  /* non-square kernel and stride */       \
  PC(2, 1, 5, 6, 3, 3, 2, 2, 1, 1),  /* stride 2, padding 1 */                \
  PC(1, 3, 3, 3, 3, 3, 1, 1, 0, 0),  /* one window: the whole plane */        \
  PC(1, 1, 4, 4, 2, 2, 2, 2, 1, 1),  /* windows half padding */               \
  PC(2, 2, 4, 3, 2, 3, 1, 2, 1, 1),  /* non-square input, kernel, stride */   \
  PC(1, 2, 3, 5, 1, 1, 2, 2, 0, 0),  /* a 1x1 kernel subsamples */            \
  PC(2, 3, 6, 4, 2, 2, 3, 3, 0, 0),  /* stride above the kernel: gaps */      \
  {.ndim = {4}, .shape = {{1, 1, 2, 2}}, .args = {.i = {3, 3, 1, 1, 0, 0}},  \
   .status = TG_ESHAPE,                                                      \
   .msg = "kernel 3x3 is larger than the padded input 2x2 (x is [1,1,2,2], " \
          "padding 0x0)"},                                                   \
  {.ndim = {4}, .shape = {{1, 1, 3, 2}}, .args = {.i = {2, 4, 1, 1, 1, 0}},  \
   .status = TG_ESHAPE, .msg = "larger than the padded input 5x2"},          \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {2, 2, 0, 1, 0, 0}},  \
   .status = TG_EINVAL, .msg = "stride is 0x1"},                             \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {2, 2, 1, -1, 0, 0}}, \
   .status = TG_EINVAL, .msg = "stride is 1x-1"},                            \
  {.ndim = {3}, .shape = {{1, 4, 4}}, .args = {.i = {2, 2, 1, 1, 0, 0}},     \
   .status = TG_ESHAPE, .msg = "x is [1,4,4]; it must be 4-D"},              \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {3, 3, 1, 1, 2, 0}},  \
   .status = TG_EINVAL, .msg = "padding is 2x0 for a kernel of 3x3"},        \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {1, 1, 1, 1, 0, 1}},  \
   .status = TG_EINVAL, .msg = "padding is 0x1 for a kernel of 1x1"},        \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {2, 2, 1, 1, -1, 0}}, \
   .status = TG_EINVAL, .msg = "padding is -1x0"},                           \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}}, .args = {.i = {0, 2, 1, 1, 0, 0}},  \
   .status = TG_EINVAL, .msg = "kernel is 0x2"},                             \
  {.ndim = {4}, .shape = {{1, 1, 4, 4}},                                     \
   .args = {.i = {2, (int64_t)1 << 40, 1, 1, 0, 0}}, .status = TG_EINVAL,    \
   .msg = "kernel is 2x1099511627776"}

static const tg_opcase pool_cases[] = {POOL_CASES};

static const tg_opcase gap_cases[] = {
    {.ndim = {4}, .shape = {{2, 3, 4, 4}}},
    {.ndim = {4}, .shape = {{1, 1, 1, 1}}},
    {.ndim = {4}, .shape = {{3, 2, 5, 3}}},
    {.ndim = {4}, .shape = {{1, 4, 7, 1}}},
    {.ndim = {3}, .shape = {{2, 4, 4}}, .status = TG_ESHAPE,
     .msg = "x is [2,4,4]; it must be 4-D"},
    {.ndim = {4}, .shape = {{2, 3, 0, 4}}, .status = TG_ESHAPE,
     .msg = "x is [2,3,0,4]; its planes are empty"},
};

const tg_opdef tg__op_max_pool2d = {
    .name = "max_pool2d", .n_in = 1, .in_names = {"x"}, .rule = rule_pool,
    .forward = forward_max, .backward = backward_max, TG__CASES(pool_cases)};
const tg_opdef tg__op_avg_pool2d = {
    .name = "avg_pool2d", .n_in = 1, .in_names = {"x"}, .rule = rule_pool,
    .forward = forward_avg, .backward = backward_avg, TG__CASES(pool_cases)};
const tg_opdef tg__op_global_avg_pool2d = {
    .name = "global_avg_pool2d", .n_in = 1, .in_names = {"x"},
    .rule = rule_gap, .forward = forward_gap, .backward = backward_gap,
    TG__CASES(gap_cases)};

tg_tensor *tg_max_pool2d(tg_tape *t, tg_tensor *x, int kh, int kw,
                         int stride_h, int stride_w, int pad_h, int pad_w) {
  tg_opargs a = {.i = {kh, kw, stride_h, stride_w, pad_h, pad_w}};
  return TG__APPLY(t, max_pool2d, &a, x);
}

tg_tensor *tg_avg_pool2d(tg_tape *t, tg_tensor *x, int kh, int kw,
                         int stride_h, int stride_w, int pad_h, int pad_w) {
  tg_opargs a = {.i = {kh, kw, stride_h, stride_w, pad_h, pad_w}};
  return TG__APPLY(t, avg_pool2d, &a, x);
}

tg_tensor *tg_global_avg_pool2d(tg_tape *t, tg_tensor *x) {
  return TG__APPLY(t, global_avg_pool2d, NULL, x);
}
