/* ops/layer_norm.c: layer normalisation over the last axis of x [..., D],
 * one fused op. Per row r, with the biased variance (as PyTorch):
 *   mu = mean_j x_j,  var = mean_j (x_j - mu)^2,  rstd = 1/sqrt(var + eps),
 *   xh_j = (x_j - mu) rstd,  y_j = xh_j w_j + b_j
 * (w = 1 and b = 0 when left out). Forward keeps mu and rstd per row, in
 * double. Backward, with h_j = g_j w_j:
 *   dx_j += rstd (h_j - mean_k h_k - xh_j mean_k h_k xh_k),
 *   dw_j += sum_r g_rj xh_rj,  db_j += sum_r g_rj.
 * The sums run in double for both dtypes: a row's mean and variance are
 * its only long reductions. args f[0] = eps. */
#include <math.h>

#include "op.h"

typedef struct {
  double *mu, *rstd;
} saved;

/* The kernels once per vector path (TG__SIMD_EACH). The sums are plain
 * loops in order, which no path may reorder, so every path gives the same
 * bits; what vectorises is the elementwise work beside them. */
#define KERNELS(ISA, T, S)                                                   \
  TG__TARGET_##ISA static void fwd_##S##_##ISA(const T *restrict x, const T *w, const T *b,           \
                      T *restrict y, double *mus, double *rstds,             \
                      int64_t rows, int64_t D, double eps) {                 \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *xr = x + r * D;                                               \
      T *yr = y + r * D;                                                     \
      double s = 0, v = 0;                                                   \
      for (int64_t j = 0; j < D; j++) s += xr[j];                            \
      double mu = s / (double)D;                                             \
      for (int64_t j = 0; j < D; j++) {                                      \
        double c = xr[j] - mu;                                               \
        v += c * c;                                                          \
      }                                                                      \
      double rs = 1 / sqrt(v / (double)D + eps);                             \
      if (mus) {                                                             \
        mus[r] = mu;                                                         \
        rstds[r] = rs;                                                       \
      }                                                                      \
      /* one loop per case of w and b, so that each vectorises */           \
      if (w && b) {                                                          \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++)                                      \
          yr[j] = (T)((xr[j] - mu) * rs * w[j] + b[j]);                      \
      } else if (w) {                                                        \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++) yr[j] = (T)((xr[j] - mu) * rs * w[j]); \
      } else if (b) {                                                        \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++) yr[j] = (T)((xr[j] - mu) * rs + b[j]); \
      } else {                                                               \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++) yr[j] = (T)((xr[j] - mu) * rs);      \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  TG__TARGET_##ISA static void bwd_##S##_##ISA(                              \
      const T *restrict x, const T *w, const T *restrict g,                  \
      const double *mus, const double *rstds, T *dx, T *dw, T *db,           \
      int64_t rows, int64_t D) {                                             \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *xr = x + r * D, *gr = g + r * D;                              \
      double mu = mus[r], rs = rstds[r], sh = 0, shx = 0;                    \
      for (int64_t j = 0; j < D; j++) {                                      \
        double xh = (xr[j] - mu) * rs, h = w ? (double)gr[j] * w[j] : gr[j]; \
        sh += h;                                                             \
        shx += h * xh;                                                       \
        if (dw) dw[j] += (T)(gr[j] * xh);                                    \
        if (db) db[j] += gr[j];                                              \
      }                                                                      \
      if (!dx) continue;                                                     \
      double mh = sh / (double)D, mhx = shx / (double)D;                     \
      T *dr = dx + r * D;                                                    \
      if (w) {                                                               \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++) {                                    \
          double xh = (xr[j] - mu) * rs, h = (double)gr[j] * w[j];           \
          dr[j] += (T)(rs * (h - mh - xh * mhx));                            \
        }                                                                    \
      } else {                                                               \
        TG__SIMD                                                             \
        for (int64_t j = 0; j < D; j++) {                                    \
          double xh = (xr[j] - mu) * rs, h = gr[j];                          \
          dr[j] += (T)(rs * (h - mh - xh * mhx));                            \
        }                                                                    \
      }                                                                      \
    }                                                                        \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  static void (*const fwd_tab_##S[TG__SIMD_NPATHS])(                         \
      const T *restrict, const T *, const T *, T *restrict, double *,        \
      double *, int64_t, int64_t, double) = TG__SIMD_TABLE(fwd_##S);         \
  static void (*const bwd_tab_##S[TG__SIMD_NPATHS])(                         \
      const T *restrict, const T *, const T *restrict, const double *,       \
      const double *, T *, T *, T *, int64_t, int64_t) =                     \
      TG__SIMD_TABLE(bwd_##S);
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

/* Forward's rows over threads: each row is its own (backward's weight
 * gradients sum over rows, so it stays on one thread). */
typedef struct {
  const tg_tensor *x, *w, *b;
  tg_tensor *y;
  saved *s;
  int64_t D;
  double eps;
  int path;
} fwd_job;
/* Elements per thread from which forward is split: its three passes over
 * a row cost a few ns per element. */
#define LN_PAR_ELEMS ((int64_t)1 << 15)

static void fwd_range(void *p, int64_t r0, int64_t r1) {
  const fwd_job *j = p;
  int64_t D = j->D, o = r0 * D;
  double *mu = j->s ? j->s->mu + r0 : NULL, *rs = j->s ? j->s->rstd + r0 : NULL;
  if (j->x->dtype == TG_F32)
    fwd_tab_f32[j->path]((const float *)j->x->data + o,
                         j->w ? j->w->data : NULL, j->b ? j->b->data : NULL,
                         (float *)j->y->data + o, mu, rs, r1 - r0, D, j->eps);
  else
    fwd_tab_f64[j->path]((const double *)j->x->data + o,
                         j->w ? j->w->data : NULL, j->b ? j->b->data : NULL,
                         (double *)j->y->data + o, mu, rs, r1 - r0, D, j->eps);
}

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  const tg_tensor *x = in[0];
  char sx[96], sp[96];
  if (x->ndim < 1)
    return tg__err(TG_ESHAPE, "%s: x is %s; it needs at least 1 dim", fn,
                   tg__shape_str(x, sx));
  int64_t D = x->shape[x->ndim - 1];
  for (int k = 1; k < 3; k++) {
    const tg_tensor *p = in[k];
    if (p && (p->ndim != 1 || p->shape[0] != D))
      return tg__err(TG_ESHAPE, "%s: %s is %s; for x of %s it must be [%lld]",
                     fn, k == 1 ? "w" : "b", tg__shape_str(p, sp),
                     tg__shape_str(x, sx), (long long)D);
  }
  double eps = a->f[0];
  if (!(eps > 0 && isfinite(eps)))
    return tg__err(TG_EINVAL, "%s: eps is %g; it must be > 0 and finite", fn,
                   eps);
  return tg__rule_same(fn, in, a, out);
}

static int forward(tg_tape *t, tg_node *n) {
  const tg_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  int64_t rows, D;
  tg__rows_cols(x, &rows, &D);
  saved *s = NULL;
  if (tg__recorded(n)) {
    s = tg__arena_alloc(t, sizeof *s);
    if (s) {
      s->mu = tg__arena_alloc(t, (size_t)rows * sizeof(double) + 1);
      s->rstd = tg__arena_alloc(t, (size_t)rows * sizeof(double) + 1);
    }
    if (!s || !s->mu || !s->rstd)
      return tg__err(TG_ENOMEM, "tg_layer_norm: out of memory for what backward keeps");
    n->saved = s;
  }
  int rc = tg__simd_check("tg_layer_norm");
  if (rc) return rc;
  fwd_job j = {.x = x, .w = w, .b = b, .y = n->out, .s = s, .D = D,
               .eps = n->args.f[0], .path = tg__simd_path()};
  int64_t min_rows = D > 0 ? LN_PAR_ELEMS / D : rows;
  tg__par_range(rows, min_rows > 0 ? min_rows : 1, fwd_range, &j);
  return TG_OK;
}

static void backward(const tg_node *n) {
  const tg_tensor *x = n->in[0], *w = n->in[1];
  const saved *s = n->saved;
  int64_t rows, D;
  tg__rows_cols(x, &rows, &D);
  int path = tg__simd_path();
  if (x->dtype == TG_F32)
    bwd_tab_f32[path](x->data, w ? w->data : NULL, n->out->grad, s->mu, s->rstd,
            tg__gin(n, 0), tg__gin(n, 1), tg__gin(n, 2), rows, D);
  else
    bwd_tab_f64[path](x->data, w ? w->data : NULL, n->out->grad, s->mu, s->rstd,
            tg__gin(n, 0), tg__gin(n, 1), tg__gin(n, 2), rows, D);
}

/* args f[0] = eps; w or b of -1 dims is left out; x's last dim is D. */
#define CASE(eps, nw, nb, D, nx, ...)                                        \
  {.ndim = {nx, nw, nb}, .shape = {{__VA_ARGS__}, {D}, {D}},                 \
   .args = {.f = {eps}}}
static const tg_opcase cases[] = {
    CASE(1e-5, 1, 1, 4, 2, 3, 4),
    CASE(1e-5, 1, 1, 4, 1, 4),
    CASE(1e-3, 1, -1, 4, 3, 2, 3, 4),
    CASE(1e-5, -1, 1, 4, 4, 2, 1, 2, 4),
    CASE(0.1, -1, -1, 4, 2, 5, 4),
    CASE(1e-5, 1, 1, 1, 2, 3, 1),
    CASE(1e-5, 1, 1, 2, 2, 1, 2),
    {.ndim = {2, 1, 1}, .shape = {{3, 4}, {3}, {4}}, .args = {.f = {1e-5}},
     .status = TG_ESHAPE, .msg = "w is [3]"},
    {.ndim = {2, 1, 2}, .shape = {{3, 4}, {4}, {1, 4}}, .args = {.f = {1e-5}},
     .status = TG_ESHAPE, .msg = "b is [1,4]"},
    {.ndim = {0, -1, -1}, .args = {.f = {1e-5}}, .status = TG_ESHAPE,
     .msg = "at least 1 dim"},
    {.ndim = {2, -1, -1}, .shape = {{3, 4}}, .args = {.f = {0}},
     .status = TG_EINVAL, .msg = "eps is 0"},
    {.ndim = {2, -1, -1}, .shape = {{3, 4}}, .args = {.f = {-1e-5}},
     .status = TG_EINVAL, .msg = "eps is -1e-05"},
    {.ndim = {2, -1, -1}, .shape = {{3, 4}}, .args = {.f = {INFINITY}},
     .status = TG_EINVAL, .msg = "eps is inf"},
};

const tg_opdef tg__op_layer_norm = {
    .name = "layer_norm", .n_in = 3, .in_names = {"x", "w", "b"},
    .flags = TG__IN_OPT(1) | TG__IN_OPT(2), .rule = rule, .forward = forward,
    .backward = backward, TG__CASES(cases)};

tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, tg_tensor *w, tg_tensor *b,
                         double eps) {
  return TG__APPLY(t, layer_norm, &(tg_opargs){.f = {eps}}, x, w, b);
}
