/* ops/batch_norm.c: batch normalisation over the channels of x [N,C,H,W]
 * (or the features of [N,C]), one fused op. For channel c, over its M =
 * N*H*W values:
 *   training:   mu = mean x, var = mean (x - mu)^2 (biased), and the
 *               caller's running statistics are updated in place, as
 *               PyTorch does: rm = (1-m) rm + m mu, rv = (1-m) rv + m var
 *               M/(M-1) (the unbiased variance);
 *   evaluation: mu = rm, var = rv (nothing is updated);
 *   then rstd = 1/sqrt(var + eps), xh = (x - mu) rstd, y = gamma xh + beta
 *   (gamma = 1, beta = 0 when left out).
 * Backward, with sums over the channel's M values: dbeta += sum g, dgamma
 * += sum g xh, and
 *   training:   dx += gamma rstd (g - sum g / M - xh sum(g xh) / M),
 *               the gradient through the batch's mean and variance;
 *   evaluation: dx += gamma rstd g, a plain affine map.
 * The running statistics get no gradient. Forward keeps mu and rstd per
 * channel (double, in the arena), so backward reads nothing the next
 * forward may have updated. Sums run in double for both dtypes.
 * args i[0] = training, f[0] = momentum, f[1] = eps. */
#include <math.h>

#include "op.h"

enum { X, GAMMA, BETA, RMEAN, RVAR };

typedef struct {
  double *mu, *rstd;
} saved;

/* x as N blocks of C channels of HW values, and the channels [c0, c1) a
 * kernel call works on: channels are independent, so the passes split
 * over threads by channel, each computed the same way whatever the
 * split. */
typedef struct {
  int64_t N, C, HW, c0, c1;
} geom;

static geom geom_of(const tg_tensor *x) {
  geom g = {x->shape[0], x->shape[1], 1, 0, x->shape[1]};
  if (x->ndim == 4) g.HW = x->shape[2] * x->shape[3];
  return g;
}

#define KERNELS(T, S)                                                        \
  /* The batch's statistics of each channel, and the running ones moved     \
   * towards them. */                                                        \
  static void stats_##S(const T *restrict x, geom d, double eps, double m,   \
                        T *restrict rm, T *restrict rv, double *mus,         \
                        double *rstds) {                                     \
    const double M = (double)(d.N * d.HW);                                   \
    for (int64_t c = d.c0; c < d.c1; c++) {                                  \
      double s = 0, v = 0;                                                   \
      for (int64_t n = 0; n < d.N; n++) {                                    \
        const T *xc = x + (n * d.C + c) * d.HW;                              \
        for (int64_t k = 0; k < d.HW; k++) s += xc[k];                       \
      }                                                                      \
      const double mu = s / M;                                               \
      for (int64_t n = 0; n < d.N; n++) {                                    \
        const T *xc = x + (n * d.C + c) * d.HW;                              \
        for (int64_t k = 0; k < d.HW; k++) {                                 \
          double e = xc[k] - mu;                                             \
          v += e * e;                                                        \
        }                                                                    \
      }                                                                      \
      mus[c] = mu;                                                           \
      rstds[c] = 1 / sqrt(v / M + eps);                                      \
      rm[c] = (T)((1 - m) * rm[c] + m * mu);                                 \
      rv[c] = (T)((1 - m) * rv[c] + m * (v / (M - 1)));                      \
    }                                                                        \
  }                                                                          \
  static void running_##S(const T *restrict rm, const T *restrict rv,        \
                          geom d, double eps, double *mus, double *rstds) {  \
    for (int64_t c = d.c0; c < d.c1; c++) {                                  \
      mus[c] = rm[c];                                                        \
      rstds[c] = 1 / sqrt((double)rv[c] + eps);                              \
    }                                                                        \
  }                                                                          \
  static void norm_##S(const T *restrict x, const T *gamma, const T *beta,   \
                       T *restrict y, geom d, const double *mus,             \
                       const double *rstds) {                                \
    for (int64_t c = d.c0; c < d.c1; c++)                                    \
      for (int64_t n = 0; n < d.N; n++) {                                    \
        /* (x - mu) first: folding mu into the shift would cancel large    \
         * terms for a channel whose mean is far from 0 */                   \
        const double a = gamma ? gamma[c] * rstds[c] : rstds[c];             \
        const double mu = mus[c], b = beta ? (double)beta[c] : 0;            \
        const T *xc = x + (n * d.C + c) * d.HW;                              \
        T *yc = y + (n * d.C + c) * d.HW;                                    \
        for (int64_t k = 0; k < d.HW; k++) yc[k] = (T)((xc[k] - mu) * a + b); \
      }                                                                      \
  }                                                                          \
  static void bwd_##S(const T *restrict x, const T *gamma,                   \
                      const T *restrict g, const double *mus,                \
                      const double *rstds, T *dx, T *dgamma, T *dbeta,       \
                      geom d, bool training) {                               \
    const double M = (double)(d.N * d.HW);                                   \
    for (int64_t c = d.c0; c < d.c1; c++) {                                  \
      const double mu = mus[c], rs = rstds[c];                               \
      double sg = 0, sgx = 0;                                                \
      for (int64_t n = 0; n < d.N; n++) {                                    \
        const T *xc = x + (n * d.C + c) * d.HW, *gc = g + (n * d.C + c) * d.HW; \
        for (int64_t k = 0; k < d.HW; k++) {                                 \
          sg += gc[k];                                                       \
          sgx += gc[k] * ((xc[k] - mu) * rs);                                \
        }                                                                    \
      }                                                                      \
      if (dgamma) dgamma[c] += (T)sgx;                                       \
      if (dbeta) dbeta[c] += (T)sg;                                          \
      if (!dx) continue;                                                     \
      const double a = gamma ? gamma[c] * rs : rs;                           \
      const double mg = training ? sg / M : 0, mgx = training ? sgx / M : 0; \
      for (int64_t n = 0; n < d.N; n++) {                                    \
        const T *xc = x + (n * d.C + c) * d.HW, *gc = g + (n * d.C + c) * d.HW; \
        T *dc = dx + (n * d.C + c) * d.HW;                                   \
        for (int64_t k = 0; k < d.HW; k++)                                   \
          dc[k] += (T)(a * (gc[k] - mg - (xc[k] - mu) * rs * mgx));          \
      }                                                                      \
    }                                                                        \
  }
TG__BOTH(KERNELS)
#undef KERNELS

static const char *const names[] = {"x", "gamma", "beta", "running_mean",
                                    "running_var"};

static int rule(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                tg_outshape *out) {
  const tg_tensor *x = in[X];
  char sx[96], sp[96];
  if (x->ndim != 2 && x->ndim != 4)
    return tg__err(TG_ESHAPE, "%s: x is %s; it must be [N,C] or [N,C,H,W]",
                   fn, tg__shape_str(x, sx));
  const int64_t C = x->shape[1];
  for (int k = GAMMA; k <= RVAR; k++) {
    const tg_tensor *p = in[k];
    if (p && (p->ndim != 1 || p->shape[0] != C))
      return tg__err(TG_ESHAPE, "%s: %s is %s; for x of %s it must be [%lld]",
                     fn, names[k], tg__shape_str(p, sp), tg__shape_str(x, sx),
                     (long long)C);
  }
  for (int k = RMEAN; k <= RVAR; k++) {
    /* Updated in place: a tape's tensor may be an earlier op's result,
     * which its backward still reads. */
    if (in[k]->tape)
      return tg__err(TG_EINVAL, "%s: %s is a tape's tensor; the running "
                     "statistics must be caller-owned", fn, names[k]);
    for (int j = X; j < k; j++)
      if (in[j] && in[j]->data == in[k]->data)
        return tg__err(TG_EINVAL, "%s: %s and %s share their data; the "
                       "running statistics are written and must be apart",
                       fn, names[j], names[k]);
  }
  const double m = a->f[0], eps = a->f[1];
  if (!(m >= 0 && m <= 1))
    return tg__err(TG_EINVAL, "%s: momentum is %g; it must be in [0, 1]", fn, m);
  if (!(eps > 0 && isfinite(eps)))
    return tg__err(TG_EINVAL, "%s: eps is %g; it must be > 0 and finite", fn,
                   eps);
  geom d = geom_of(x);
  if (a->i[0] && d.N * d.HW < 2)
    return tg__err(TG_ESHAPE, "%s: x is %s; training needs at least 2 values "
                   "per channel (the running variance is unbiased)", fn,
                   tg__shape_str(x, sx));
  return tg__rule_same(fn, in, a, out);
}

/* A pass over channels [c0, c1): forward (the statistics, then y) or
 * backward. */
typedef struct {
  const tg_node *n;
  const saved *s;
  bool backward;
} job;

static void run_range(void *ctx, int64_t c0, int64_t c1) {
  const job *j = ctx;
  const tg_node *n = j->n;
  const tg_tensor *x = n->in[X], *gm = n->in[GAMMA], *bt = n->in[BETA];
  tg_tensor *rm = n->in[RMEAN], *rv = n->in[RVAR];
  const saved *s = j->s;
  geom d = geom_of(x);
  d.c0 = c0;
  d.c1 = c1;
  const bool training = n->args.i[0] != 0, f32 = x->dtype == TG_F32;
  const double m = n->args.f[0], eps = n->args.f[1];
  const void *g = gm ? gm->data : NULL;
  if (j->backward) {
    if (f32)
      bwd_f32(x->data, g, n->out->grad, s->mu, s->rstd, tg__gin(n, X),
              tg__gin(n, GAMMA), tg__gin(n, BETA), d, training);
    else
      bwd_f64(x->data, g, n->out->grad, s->mu, s->rstd, tg__gin(n, X),
              tg__gin(n, GAMMA), tg__gin(n, BETA), d, training);
    return;
  }
  const void *b = bt ? bt->data : NULL;
  if (f32) {
    if (training)
      stats_f32(x->data, d, eps, m, rm->data, rv->data, s->mu, s->rstd);
    else
      running_f32(rm->data, rv->data, d, eps, s->mu, s->rstd);
    norm_f32(x->data, g, b, n->out->data, d, s->mu, s->rstd);
  } else {
    if (training)
      stats_f64(x->data, d, eps, m, rm->data, rv->data, s->mu, s->rstd);
    else
      running_f64(rm->data, rv->data, d, eps, s->mu, s->rstd);
    norm_f64(x->data, g, b, n->out->data, d, s->mu, s->rstd);
  }
}

static void run(const tg_node *n, const saved *s, bool backward) {
  job j = {n, s, backward};
  geom d = geom_of(n->in[X]);
  /* a channel's pass reads its N*HW values two or three times */
  int64_t per = 3 * d.N * d.HW, min_c = TG__PAR_ELEMS / (per > 0 ? per : 1);
  tg__par_range(d.C, min_c > 0 ? min_c : 1, run_range, &j);
}

static int forward(tg_tape *t, tg_node *n) {
  geom d = geom_of(n->in[X]);
  saved *s = tg__arena_alloc(t, sizeof *s);
  if (s) {
    s->mu = tg__arena_alloc(t, (size_t)d.C * sizeof(double) + 1);
    s->rstd = tg__arena_alloc(t, (size_t)d.C * sizeof(double) + 1);
  }
  if (!s || !s->mu || !s->rstd)
    return tg__err(TG_ENOMEM, "tg_batch_norm: out of memory for the statistics");
  if (tg__recorded(n)) n->saved = s;
  run(n, s, false);
  return TG_OK;
}

static void backward(const tg_node *n) { run(n, n->saved, true); }

/* training, momentum, eps; gamma and beta present (1) or left out (-1);
 * C channels; x of nx dims. The running variance is drawn positive. In
 * training the output does not depend on the running statistics, so the
 * updates that every forward of a gradient check makes change nothing
 * it measures; in evaluation nothing is updated. */
#define CASE(tr, m, eps, ng, nb, C, nx, ...)                                  \
  {.ndim = {nx, ng, nb, 1, 1}, .shape = {{__VA_ARGS__}, {C}, {C}, {C}, {C}},   \
   .domain = {TG__DOM_ANY, TG__DOM_POS, TG__DOM_ANY, TG__DOM_ANY,             \
              TG__DOM_POS},                                                   \
   .args = {.i = {tr}, .f = {m, eps}}}
#define BAD(tr, m, eps, st, frag, C, nx, ...)                                 \
  {.ndim = {nx, 1, 1, 1, 1}, .shape = {{__VA_ARGS__}, {C}, {C}, {C}, {C}},     \
   .domain = {0, 0, 0, 0, TG__DOM_POS}, .args = {.i = {tr}, .f = {m, eps}},   \
   .status = st, .msg = frag}
static const tg_opcase cases[] = {
    CASE(1, 0.1, 1e-5, 1, 1, 3, 4, 2, 3, 4, 4),
    CASE(1, 0.1, 1e-5, 1, 1, 2, 4, 2, 2, 3, 5), /* odd planes */
    CASE(1, 0.1, 1e-5, 1, 1, 3, 4, 1, 3, 2, 2), /* N = 1 */
    CASE(1, 0.5, 1e-3, -1, 1, 2, 4, 3, 2, 1, 1), /* 1x1 planes */
    CASE(1, 0.0, 1e-5, 1, -1, 4, 2, 5, 4),      /* [N,C] features */
    CASE(1, 1.0, 0.1, -1, -1, 3, 2, 2, 3),      /* two values per channel */
    CASE(0, 0.1, 1e-5, 1, 1, 3, 4, 2, 3, 3, 3), /* evaluation */
    CASE(0, 0.1, 1e-5, -1, -1, 4, 2, 3, 4),
    CASE(0, 0.1, 1e-5, 1, -1, 2, 4, 1, 2, 1, 1), /* one value: fine here */
    CASE(0, 0.1, 1e-5, 1, 1, 3, 2, 1, 3),
    BAD(1, 0.1, 1e-5, TG_ESHAPE, "x is [2,3,4]; it must be [N,C] or [N,C,H,W]",
        3, 3, 2, 3, 4),
    BAD(1, 0.1, 1e-5, TG_ESHAPE, "x is [6]", 6, 1, 6),
    {.ndim = {4, 1, 1, 1, 1}, .shape = {{2, 3, 2, 2}, {4}, {3}, {3}, {3}},
     .args = {.i = {1}, .f = {0.1, 1e-5}}, .status = TG_ESHAPE,
     .msg = "gamma is [4]; for x of [2,3,2,2] it must be [3]"},
    {.ndim = {2, 1, 1, 1, 1}, .shape = {{2, 3}, {3}, {2}, {3}, {3}},
     .args = {.i = {1}, .f = {0.1, 1e-5}}, .status = TG_ESHAPE,
     .msg = "beta is [2]"},
    {.ndim = {2, -1, -1, 2, 1}, .shape = {{2, 3}, {0}, {0}, {1, 3}, {3}},
     .args = {.i = {1}, .f = {0.1, 1e-5}}, .status = TG_ESHAPE,
     .msg = "running_mean is [1,3]; for x of [2,3] it must be [3]"},
    {.ndim = {4, -1, -1, 1, 1}, .shape = {{2, 3, 2, 2}, {0}, {0}, {3}, {2}},
     .args = {.i = {0}, .f = {0.1, 1e-5}}, .status = TG_ESHAPE,
     .msg = "running_var is [2]"},
    BAD(1, -0.1, 1e-5, TG_EINVAL, "momentum is -0.1; it must be in [0, 1]", 3,
        2, 4, 3),
    BAD(0, 1.5, 1e-5, TG_EINVAL, "momentum is 1.5", 3, 2, 4, 3),
    BAD(1, NAN, 1e-5, TG_EINVAL, "momentum is nan", 3, 2, 4, 3),
    BAD(1, 0.1, 0, TG_EINVAL, "eps is 0; it must be > 0", 3, 2, 4, 3),
    BAD(0, 0.1, -1e-5, TG_EINVAL, "eps is -1e-05", 3, 2, 4, 3),
    BAD(1, 0.1, INFINITY, TG_EINVAL, "eps is inf", 3, 2, 4, 3),
    BAD(1, 0.1, 1e-5, TG_ESHAPE,
        "x is [1,3]; training needs at least 2 values per channel", 3, 2, 1, 3),
    BAD(1, 0.1, 1e-5, TG_ESHAPE, "x is [1,2,1,1]; training needs at least 2",
        2, 4, 1, 2, 1, 1),
};

const tg_opdef tg__op_batch_norm = {
    .name = "batch_norm", .n_in = 5,
    .in_names = {"x", "gamma", "beta", "running_mean", "running_var"},
    .flags = TG__IN_OPT(GAMMA) | TG__IN_OPT(BETA) | TG__IN_NODIFF(RMEAN) |
             TG__IN_NODIFF(RVAR),
    .rule = rule, .forward = forward, .backward = backward, TG__CASES(cases)};

tg_tensor *tg_batch_norm(tg_tape *t, tg_tensor *x, tg_tensor *gamma,
                         tg_tensor *beta, tg_tensor *running_mean,
                         tg_tensor *running_var, bool training,
                         double momentum, double eps) {
  tg_opargs a = {.i = {training}, .f = {momentum, eps}};
  return TG__APPLY(t, batch_norm, &a, x, gamma, beta, running_mean,
                   running_var);
}
