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

/* One call's operands, for the thread door's ranges. */
typedef struct {
  const void *x, *w, *b, *g;
  void *y, *dx, *dw, *db;
  double *mu, *rstd; /* NULL in the forward of an unrecorded call */
  int64_t rows, D;
  double eps;
} job;

/* The kernels once per vector path (TG__SIMD_EACH), every path giving the
 * same bits. Rows split over threads (forward, dx) and columns (dw, db:
 * each column sums its rows in order), so no result depends on the split.
 * A row's sums run in 8 partial sums in double (element j into sum j mod
 * 8, added pairwise at the end): a fixed order on every path that
 * vectorises, where one running sum is a chain of dependent adds. */
#define KERNELS(ISA, T, S)                                                   \
  TG__TARGET_##ISA static inline double sum8_##S##_##ISA(                    \
      const T *restrict x, int64_t n, double c, bool sq) {                   \
    double a[8] = {0};                                                       \
    int64_t j = 0;                                                           \
    for (; j + 8 <= n; j += 8)                                               \
      for (int l = 0; l < 8; l++) {                                          \
        double d = x[j + l] - c;                                             \
        a[l] += sq ? d * d : d;                                              \
      }                                                                      \
    for (int l = 0; j < n; j++, l++) {                                       \
      double d = x[j] - c;                                                   \
      a[l] += sq ? d * d : d;                                                \
    }                                                                        \
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); \
  }                                                                          \
  TG__TARGET_##ISA static void fwd_##S##_##ISA(void *p, int64_t r0,          \
                                               int64_t r1) {                 \
    const job *jb = p;                                                       \
    const T *w = jb->w, *b = jb->b;                                          \
    const int64_t D = jb->D;                                                 \
    for (int64_t r = r0; r < r1; r++) {                                      \
      const T *restrict xr = (const T *)jb->x + r * D;                       \
      T *restrict yr = (T *)jb->y + r * D;                                   \
      double mu = sum8_##S##_##ISA(xr, D, 0, false) / (double)D;             \
      double rs =                                                            \
          1 / sqrt(sum8_##S##_##ISA(xr, D, mu, true) / (double)D + jb->eps); \
      if (jb->mu) {                                                          \
        jb->mu[r] = mu;                                                      \
        jb->rstd[r] = rs;                                                    \
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
  /* dx over rows [r0, r1): h_j = g_j w_j and its two row means. */         \
  TG__TARGET_##ISA static void bwd_dx_##S##_##ISA(void *p, int64_t r0,       \
                                                  int64_t r1) {              \
    const job *jb = p;                                                       \
    const T *w = jb->w;                                                      \
    const int64_t D = jb->D;                                                 \
    for (int64_t r = r0; r < r1; r++) {                                      \
      const T *restrict xr = (const T *)jb->x + r * D;                       \
      const T *restrict gr = (const T *)jb->g + r * D;                       \
      T *restrict dr = (T *)jb->dx + r * D;                                  \
      double mu = jb->mu[r], rs = jb->rstd[r], sh[8] = {0}, shx[8] = {0};    \
      int64_t j = 0;                                                         \
      for (; j + 8 <= D; j += 8)                                             \
        for (int l = 0; l < 8; l++) {                                        \
          double xh = (xr[j + l] - mu) * rs;                                 \
          double h = w ? (double)gr[j + l] * w[j + l] : gr[j + l];           \
          sh[l] += h;                                                        \
          shx[l] += h * xh;                                                  \
        }                                                                    \
      for (int l = 0; j < D; j++, l++) {                                     \
        double xh = (xr[j] - mu) * rs, h = w ? (double)gr[j] * w[j] : gr[j]; \
        sh[l] += h;                                                          \
        shx[l] += h * xh;                                                    \
      }                                                                      \
      double mh = (((sh[0] + sh[1]) + (sh[2] + sh[3])) +                     \
                   ((sh[4] + sh[5]) + (sh[6] + sh[7]))) / (double)D;         \
      double mhx = (((shx[0] + shx[1]) + (shx[2] + shx[3])) +                \
                    ((shx[4] + shx[5]) + (shx[6] + shx[7]))) / (double)D;    \
      if (w) {                                                               \
        TG__SIMD                                                             \
        for (j = 0; j < D; j++) {                                            \
          double xh = (xr[j] - mu) * rs, h = (double)gr[j] * w[j];           \
          dr[j] += (T)(rs * (h - mh - xh * mhx));                            \
        }                                                                    \
      } else {                                                               \
        TG__SIMD                                                             \
        for (j = 0; j < D; j++) {                                            \
          double xh = (xr[j] - mu) * rs;                                     \
          dr[j] += (T)(rs * ((double)gr[j] - mh - xh * mhx));                \
        }                                                                    \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  /* dw, db over columns [c0, c1), each summing the rows in order. */       \
  TG__TARGET_##ISA static void bwd_dwb_##S##_##ISA(void *p, int64_t c0,      \
                                                   int64_t c1) {             \
    const job *jb = p;                                                       \
    const int64_t D = jb->D, rows = jb->rows;                                \
    T *dw = jb->dw, *db = jb->db;                                            \
    for (int64_t r = 0; r < rows; r++) {                                     \
      const T *restrict xr = (const T *)jb->x + r * D;                       \
      const T *restrict gr = (const T *)jb->g + r * D;                       \
      double mu = jb->mu[r], rs = jb->rstd[r];                               \
      if (dw) {                                                              \
        TG__SIMD                                                             \
        for (int64_t j = c0; j < c1; j++)                                    \
          dw[j] += (T)(gr[j] * ((xr[j] - mu) * rs));                         \
      }                                                                      \
      if (db) {                                                              \
        TG__SIMD                                                             \
        for (int64_t j = c0; j < c1; j++) db[j] += gr[j];                    \
      }                                                                      \
    }                                                                        \
  }
#define TABLES(T, S)                                                         \
  TG__SIMD_EACH(KERNELS, T, S)                                               \
  TG__RANGE_TABLE(fwd, S)                                                    \
  TG__RANGE_TABLE(bwd_dx, S)                                                 \
  TG__RANGE_TABLE(bwd_dwb, S)
TG__BOTH(TABLES)
#undef TABLES
#undef KERNELS

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
  int rc = tg__simd_check("tg_layer_norm");
  if (rc) return rc;
  job jb = {.x = x->data, .w = w ? w->data : NULL, .b = b ? b->data : NULL,
            .y = n->out->data, .eps = n->args.f[0]};
  tg__rows_cols(x, &jb.rows, &jb.D);
  if (tg__recorded(n)) {
    saved *s = tg__arena_alloc(t, sizeof *s);
    if (s) {
      s->mu = tg__arena_alloc(t, (size_t)jb.rows * sizeof(double) + 1);
      s->rstd = tg__arena_alloc(t, (size_t)jb.rows * sizeof(double) + 1);
    }
    if (!s || !s->mu || !s->rstd)
      return tg__err(TG_ENOMEM, "tg_layer_norm: out of memory for what backward keeps");
    n->saved = s;
    jb.mu = s->mu;
    jb.rstd = s->rstd;
  }
  int path = tg__simd_path();
  tg__par_range(jb.rows, tg__par_rows(jb.D),
                x->dtype == TG_F32 ? fwd_tab_f32[path] : fwd_tab_f64[path], &jb);
  return TG_OK;
}

static void backward(const tg_node *n) {
  const tg_tensor *x = n->in[0], *w = n->in[1];
  const saved *s = n->saved;
  job jb = {.x = x->data, .w = w ? w->data : NULL, .g = n->out->grad,
            .dx = tg__gin(n, 0), .dw = tg__gin(n, 1), .db = tg__gin(n, 2),
            .mu = s->mu, .rstd = s->rstd};
  tg__rows_cols(x, &jb.rows, &jb.D);
  bool f32 = x->dtype == TG_F32;
  int path = tg__simd_path();
  if (jb.dx)
    tg__par_range(jb.rows, tg__par_rows(jb.D),
                  f32 ? bwd_dx_tab_f32[path] : bwd_dx_tab_f64[path], &jb);
  /* columns per thread: at least TG__PAR_ELEMS elements in all */
  if (jb.dw || jb.db) {
    int64_t per = jb.rows > 0 ? TG__PAR_ELEMS / jb.rows : 1;
    tg__par_range(jb.D, per > 0 ? per : 1,
                  f32 ? bwd_dwb_tab_f32[path] : bwd_dwb_tab_f64[path], &jb);
  }
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
