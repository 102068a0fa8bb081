/* src/train/optim.c: SGD (momentum, Nesterov), Adam and AdamW over
 * caller-owned parameters, clipping by the global gradient norm, and the
 * learning-rate schedules. Every buffer is made at
 * creation so a training step allocates nothing. */
#include <string.h>
#include <tgmath.h>

#include "train.h"

enum { SGD, ADAM, ADAMW };

struct tg_optim {
  int kind;
  int n;
  tg_tensor **params; /* borrowed */
  tg_tensor **buf1;   /* SGD: momentum (or NULLs); Adam: m */
  tg_tensor **buf2;   /* Adam: v */
  double lr;
  int64_t steps;
  tg_sgd_config sgd;
  tg_adam_config adam;
};

/* --- kernels, one pair per dtype (tgmath picks sqrtf for float). Scalars
 * arrive in the parameter's type. */

/* Each SGD case is its own loop without a branch inside, so the compiler
 * vectorises it (TG__SIMD); the arithmetic per element is unchanged. */
#define KERNELS(T, S)                                                        \
  static void sgd_##S(T *restrict w, const T *restrict g, T *restrict v,     \
                      int64_t n, T lr, T mu, T wd, bool nesterov) {          \
    if (!v && wd == 0) {                                                     \
      TG__SIMD                                                    \
      for (int64_t i = 0; i < n; i++) w[i] -= lr * g[i];                     \
    } else if (!v) {                                                         \
      TG__SIMD                                                    \
      for (int64_t i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);       \
    } else if (!nesterov) {                                                  \
      TG__SIMD                                                    \
      for (int64_t i = 0; i < n; i++) {                                      \
        T vi = mu * v[i] + (g[i] + wd * w[i]);                               \
        v[i] = vi;                                                           \
        w[i] -= lr * vi;                                                     \
      }                                                                      \
    } else {                                                                 \
      TG__SIMD                                                    \
      for (int64_t i = 0; i < n; i++) {                                      \
        T d = g[i] + wd * w[i];                                              \
        T vi = mu * v[i] + d;                                                \
        v[i] = vi;                                                           \
        w[i] -= lr * (d + mu * vi);                                          \
      }                                                                      \
    }                                                                        \
  }                                                                          \
  static void adam_##S(T *restrict w, const T *restrict g, T *restrict m,    \
                       T *restrict v, int64_t n, T step_size, T b1, T b2,    \
                       T eps, T wd, T sqrt_bc2, T keep) {                    \
    /* no TG__SIMD: sqrt may set errno, so this loop cannot vectorise.      \
     * keep is AdamW's 1 - lr * wd (1 for Adam, where w * 1 is exact). */   \
    for (int64_t i = 0; i < n; i++) {                                        \
      T d = g[i] + wd * w[i];                                                \
      m[i] = b1 * m[i] + (1 - b1) * d;                                       \
      v[i] = b2 * v[i] + (1 - b2) * d * d;                                   \
      w[i] = w[i] * keep - step_size * m[i] / (sqrt(v[i]) / sqrt_bc2 + eps); \
    }                                                                        \
  }                                                                          \
  static double sumsq_##S(const T *restrict g, int64_t n) {                  \
    double s = 0;                                                            \
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];        \
    return s;                                                                \
  }                                                                          \
  static void scale_##S(T *restrict g, int64_t n, T c) {                     \
    TG__SIMD                                                                 \
    for (int64_t i = 0; i < n; i++) g[i] *= c;                               \
  }
TG__BOTH(KERNELS)

/* --- validation */

static int check_params(const char *fn, tg_tensor *const *params, int n) {
  if (!params) return tg__err(TG_EINVAL, "%s: params is NULL", fn);
  if (n < 1)
    return tg__err(TG_EINVAL, "%s: n is %d; it must be at least 1", fn, n);
  for (int i = 0; i < n; i++) {
    const tg_tensor *p = params[i];
    if (!p) return tg__err(TG_EINVAL, "%s: params[%d] is NULL", fn, i);
    if (!tg__is_float(p->dtype))
      return tg__err(TG_EDTYPE,
                     "%s: params[%d] is %s; parameters must be float32 or "
                     "float64", fn, i, tg_dtype_name(p->dtype));
    if (!(p->flags & TG__REQ_GRAD) || !p->grad)
      return tg__err(TG_ESTATE,
                     "%s: params[%d] does not require grad (call "
                     "tg_requires_grad first)", fn, i);
    for (int j = 0; j < i; j++)
      if (params[j] == p)
        return tg__err(TG_EINVAL,
                       "%s: params[%d] and params[%d] are the same tensor; it "
                       "would be updated twice", fn, j, i);
  }
  return TG_OK;
}

static int check_lr(const char *fn, double lr) {
  if (!isfinite(lr) || lr <= 0)
    return tg__err(TG_EINVAL, "%s: lr is %g; it must be finite and > 0", fn, lr);
  return TG_OK;
}

/* A hyper-parameter is used in the precision of each parameter it updates:
 * in float32, v must stay finite, and (nonzero) must not round to 0, where
 * a value valid in double would give an update of inf or 0/0. */
static int check_f32(const char *fn, tg_tensor *const *params, int n,
                     const char *what, double v) {
  for (int i = 0; i < n; i++) {
    if (params[i]->dtype != TG_F32) continue;
    float f = (float)v;
    if (!isfinite(f) || (v != 0 && f == 0))
      return tg__err(TG_EINVAL,
                     "%s: %s is %g, which is %g in float32, the dtype of "
                     "params[%d]", fn, what, v, (double)f, i);
    return TG_OK;
  }
  return TG_OK;
}

/* [0, 1), NaN excluded. */
static int check_unit(const char *fn, const char *what, double x) {
  if (!(x >= 0 && x < 1))
    return tg__err(TG_EINVAL, "%s: %s is %g; it must be in [0, 1)", fn, what, x);
  return TG_OK;
}

static int check_wd(const char *fn, double wd) {
  if (!isfinite(wd) || wd < 0)
    return tg__err(TG_EINVAL,
                   "%s: weight_decay is %g; it must be finite and >= 0", fn, wd);
  return TG_OK;
}

/* --- lifecycle */

void tg_optim_free(tg_optim *opt) {
  if (!opt) return;
  for (int i = 0; i < opt->n; i++) {
    if (opt->buf1) tg_tensor_free(opt->buf1[i]);
    if (opt->buf2) tg_tensor_free(opt->buf2[i]);
  }
  tg__free(opt->params);
  tg__free(opt->buf1);
  tg__free(opt->buf2);
  tg__free(opt);
}

/* A zeroed buffer shaped like each parameter, for each non-NULL slot. */
static int make_bufs(const char *fn, tg_optim *o, tg_tensor **bufs) {
  for (int i = 0; i < o->n; i++) {
    const tg_tensor *p = o->params[i];
    if (!(bufs[i] = tg_zeros(p->dtype, p->ndim, p->shape)))
      return tg__err(TG_ENOMEM, "%s: out of memory for the state of params[%d]",
                     fn, i);
  }
  return TG_OK;
}

static tg_optim *new_optim(const char *fn, int kind, tg_tensor *const *params,
                           int n, int n_bufs) {
  tg_optim *o = tg__calloc(1, sizeof *o);
  if (!o) goto oom;
  o->kind = kind;
  o->n = n;
  o->params = tg__calloc((size_t)n, sizeof *o->params);
  o->buf1 = tg__calloc((size_t)n, sizeof *o->buf1);
  o->buf2 = tg__calloc((size_t)n, sizeof *o->buf2);
  if (!o->params || !o->buf1 || !o->buf2) goto oom;
  memcpy(o->params, params, (size_t)n * sizeof *params);
  if ((n_bufs >= 1 && make_bufs(fn, o, o->buf1)) ||
      (n_bufs >= 2 && make_bufs(fn, o, o->buf2))) {
    tg_optim_free(o);
    return NULL;
  }
  return o;
oom:
  tg_optim_free(o);
  tg__err(TG_ENOMEM, "%s: out of memory", fn);
  return NULL;
}

tg_optim *tg_sgd_new(tg_tensor *const *params, int n, const tg_sgd_config *cfg) {
  static const char fn[] = "tg_sgd_new";
  if (check_params(fn, params, n)) return NULL;
  if (!cfg) {
    tg__err(TG_EINVAL, "%s: cfg is NULL (start from TG_SGD_DEFAULTS)", fn);
    return NULL;
  }
  if (check_lr(fn, cfg->lr) || check_unit(fn, "momentum", cfg->momentum) ||
      check_wd(fn, cfg->weight_decay) ||
      check_f32(fn, params, n, "lr", cfg->lr) ||
      check_f32(fn, params, n, "weight_decay", cfg->weight_decay))
    return NULL;
  if (cfg->nesterov && cfg->momentum == 0) {
    tg__err(TG_EINVAL, "%s: nesterov needs momentum > 0; momentum is 0", fn);
    return NULL;
  }
  tg_optim *o = new_optim(fn, SGD, params, n, cfg->momentum > 0 ? 1 : 0);
  if (!o) return NULL;
  o->sgd = *cfg;
  o->lr = cfg->lr;
  return o;
}

/* AdamW's decay factor 1 - lr * wd must stay >= 0. */
static int check_decay(const char *fn, double lr, double wd) {
  if (lr * wd > 1)
    return tg__err(TG_EINVAL,
                   "%s: lr * weight_decay is %g * %g = %g; it must be at most 1 "
                   "(the weights are multiplied by 1 - lr * weight_decay)",
                   fn, lr, wd, lr * wd);
  return TG_OK;
}

static tg_optim *adam_like_new(const char *fn, int kind,
                               tg_tensor *const *params, int n,
                               const tg_adam_config *cfg) {
  if (check_params(fn, params, n)) return NULL;
  if (!cfg) {
    tg__err(TG_EINVAL, "%s: cfg is NULL (start from %s)", fn,
            kind == ADAMW ? "TG_ADAMW_DEFAULTS" : "TG_ADAM_DEFAULTS");
    return NULL;
  }
  if (check_lr(fn, cfg->lr) || check_unit(fn, "beta1", cfg->beta1) ||
      check_unit(fn, "beta2", cfg->beta2) || check_wd(fn, cfg->weight_decay))
    return NULL;
  if (!isfinite(cfg->eps) || cfg->eps <= 0) {
    tg__err(TG_EINVAL, "%s: eps is %g; it must be finite and > 0", fn, cfg->eps);
    return NULL;
  }
  if (check_f32(fn, params, n, "eps", cfg->eps) ||
      check_f32(fn, params, n, "lr", cfg->lr) ||
      check_f32(fn, params, n, "weight_decay", cfg->weight_decay) ||
      (kind == ADAMW && check_decay(fn, cfg->lr, cfg->weight_decay)))
    return NULL;
  tg_optim *o = new_optim(fn, kind, params, n, 2);
  if (!o) return NULL;
  o->adam = *cfg;
  o->lr = cfg->lr;
  return o;
}

tg_optim *tg_adam_new(tg_tensor *const *params, int n,
                      const tg_adam_config *cfg) {
  return adam_like_new("tg_adam_new", ADAM, params, n, cfg);
}

tg_optim *tg_adamw_new(tg_tensor *const *params, int n,
                       const tg_adam_config *cfg) {
  return adam_like_new("tg_adamw_new", ADAMW, params, n, cfg);
}

/* --- the update */

/* One parameter's update, split among threads when it is large. */
typedef struct {
  const tg_optim *o;
  tg_tensor *p;
  void *v1, *v2;
  double step_size, sqrt_bc2, keep;
} step_ctx;

static void step_range(void *ctx, int64_t i0, int64_t i1) {
  const step_ctx *c = ctx;
  const tg_optim *o = c->o;
  tg_tensor *p = c->p;
  int64_t n = i1 - i0;
  if (o->kind == SGD) {
    const tg_sgd_config *s = &o->sgd;
    if (p->dtype == TG_F32)
      sgd_f32((float *)p->data + i0, (const float *)p->grad + i0,
              c->v1 ? (float *)c->v1 + i0 : NULL, n, (float)o->lr,
              (float)s->momentum, (float)s->weight_decay, s->nesterov);
    else
      sgd_f64((double *)p->data + i0, (const double *)p->grad + i0,
              c->v1 ? (double *)c->v1 + i0 : NULL, n, o->lr, s->momentum,
              s->weight_decay, s->nesterov);
  } else {
    const tg_adam_config *a = &o->adam;
    /* Adam adds its weight decay to the gradient; AdamW's is in keep. */
    double wd = o->kind == ADAM ? a->weight_decay : 0;
    if (p->dtype == TG_F32)
      adam_f32((float *)p->data + i0, (const float *)p->grad + i0,
               (float *)c->v1 + i0, (float *)c->v2 + i0, n,
               (float)c->step_size, (float)a->beta1, (float)a->beta2,
               (float)a->eps, (float)wd, (float)c->sqrt_bc2, (float)c->keep);
    else
      adam_f64((double *)p->data + i0, (const double *)p->grad + i0,
               (double *)c->v1 + i0, (double *)c->v2 + i0, n, c->step_size,
               a->beta1, a->beta2, a->eps, wd, c->sqrt_bc2, c->keep);
  }
}

int tg_optim_step(tg_optim *o) {
  if (!o) return tg__err(TG_EINVAL, "tg_optim_step: optimizer is NULL");
  o->steps++;
  /* Adam's bias corrections for step t, in double whatever the dtype. */
  double step_size = 0, sqrt_bc2 = 1, keep = 1;
  if (o->kind != SGD) {
    double t = (double)o->steps;
    step_size = o->lr / (1 - pow(o->adam.beta1, t));
    sqrt_bc2 = sqrt(1 - pow(o->adam.beta2, t));
  }
  if (o->kind == ADAMW) keep = 1 - o->lr * o->adam.weight_decay;
  for (int i = 0; i < o->n; i++) {
    tg_tensor *p = o->params[i];
    if (!(p->flags & TG__REQ_GRAD)) continue; /* frozen */
    step_ctx c = {o, p, o->buf1[i] ? o->buf1[i]->data : NULL,
                  o->buf2[i] ? o->buf2[i]->data : NULL, step_size, sqrt_bc2,
                  keep};
    tg__par_range(p->numel, TG__PAR_ELEMS, step_range, &c);
  }
  return TG_OK;
}

int tg_optim_zero_grad(tg_optim *o) {
  if (!o) return tg__err(TG_EINVAL, "tg_optim_zero_grad: optimizer is NULL");
  for (int i = 0; i < o->n; i++) tg_zero_grad(o->params[i]);
  return TG_OK;
}

/* --- clipping by the global norm */

double tg_clip_grad_norm(tg_tensor *const *params, int n, double max_norm) {
  static const char fn[] = "tg_clip_grad_norm";
  if (!params) return tg__err(TG_EINVAL, "%s: params is NULL", fn);
  if (n < 1)
    return tg__err(TG_EINVAL, "%s: n is %d; it must be at least 1", fn, n);
  for (int i = 0; i < n; i++) {
    if (!params[i]) return tg__err(TG_EINVAL, "%s: params[%d] is NULL", fn, i);
    if (!tg__is_float(params[i]->dtype))
      return tg__err(TG_EDTYPE, "%s: params[%d] is %s; parameters must be "
                     "float32 or float64", fn, i,
                     tg_dtype_name(params[i]->dtype));
  }
  if (!isfinite(max_norm) || max_norm <= 0)
    return tg__err(TG_EINVAL, "%s: max_norm is %g; it must be finite and > 0",
                   fn, max_norm);
  int rc = check_f32(fn, params, n, "max_norm", max_norm);
  if (rc) return rc;
  /* One sum in parameter order, so the norm never depends on threads. */
  double ss = 0;
  for (int i = 0; i < n; i++) {
    const tg_tensor *p = params[i];
    if (!(p->flags & TG__REQ_GRAD) || !p->grad) continue;
    ss += p->dtype == TG_F32 ? sumsq_f32(p->grad, p->numel)
                             : sumsq_f64(p->grad, p->numel);
  }
  double total = sqrt(ss);
  double c = max_norm / (total + 1e-6);
  if (!isfinite(total) || !(c < 1)) return total;
  for (int i = 0; i < n; i++) {
    tg_tensor *p = params[i];
    if (!(p->flags & TG__REQ_GRAD) || !p->grad) continue;
    if (p->dtype == TG_F32) scale_f32(p->grad, p->numel, (float)c);
    else scale_f64(p->grad, p->numel, c);
  }
  return total;
}

double tg_optim_clip_grad_norm(tg_optim *o, double max_norm) {
  if (!o) return tg__err(TG_EINVAL, "tg_optim_clip_grad_norm: optimizer is NULL");
  return tg_clip_grad_norm(o->params, o->n, max_norm);
}

/* --- learning rate and state */

int tg_optim_set_lr(tg_optim *o, double lr) {
  if (!o) return tg__err(TG_EINVAL, "tg_optim_set_lr: optimizer is NULL");
  if (!isfinite(lr) || lr < 0)
    return tg__err(TG_EINVAL,
                   "tg_optim_set_lr: lr is %g; it must be finite and >= 0", lr);
  int rc = check_f32("tg_optim_set_lr", o->params, o->n, "lr", lr);
  if (!rc && o->kind == ADAMW)
    rc = check_decay("tg_optim_set_lr", lr, o->adam.weight_decay);
  if (rc) return rc;
  o->lr = lr;
  return TG_OK;
}

double tg_optim_lr(const tg_optim *o) { return o ? o->lr : 0.0; }

const char *tg_optim_name(const tg_optim *o) {
  if (!o) return "";
  return o->kind == SGD ? "sgd" : o->kind == ADAM ? "adam" : "adamw";
}

int tg_optim_n_params(const tg_optim *o) { return o ? o->n : 0; }

static int check_index(const char *fn, const tg_optim *o, int i) {
  if (!o) return tg__err(TG_EINVAL, "%s: optimizer is NULL", fn);
  if (i < 0 || i >= o->n)
    return tg__err(TG_ERANGE, "%s: parameter %d is out of range; there are %d",
                   fn, i, o->n);
  return TG_OK;
}

tg_tensor *tg_optim_param(const tg_optim *o, int i) {
  return check_index("tg_optim_param", o, i) ? NULL : o->params[i];
}

int64_t tg_optim_steps(const tg_optim *o) { return o ? o->steps : 0; }

int tg_optim_set_steps(tg_optim *o, int64_t steps) {
  if (!o) return tg__err(TG_EINVAL, "tg_optim_set_steps: optimizer is NULL");
  /* Adam's t is used as a double: keep it exact. */
  if (steps < 0 || steps > ((int64_t)1 << 53))
    return tg__err(TG_EINVAL,
                   "tg_optim_set_steps: steps is %lld; it must be in [0, 2^53]",
                   (long long)steps);
  o->steps = steps;
  return TG_OK;
}

int tg_optim_state(tg_optim *o, int i, tg_tensor **buf1, tg_tensor **buf2) {
  int rc = check_index("tg_optim_state", o, i);
  if (rc) return rc;
  if (buf1) *buf1 = o->buf1[i];
  if (buf2) *buf2 = o->buf2[i];
  return TG_OK;
}

/* --- schedules */

double tg_lr_step(double base, int epoch, int step_size, double gamma) {
  static const char fn[] = "tg_lr_step";
  if (!isfinite(base) || base < 0) {
    tg__err(TG_EINVAL, "%s: base is %g; it must be finite and >= 0", fn, base);
    return NAN;
  }
  if (step_size < 1) {
    tg__err(TG_EINVAL, "%s: step_size is %d; it must be at least 1", fn,
            step_size);
    return NAN;
  }
  if (epoch < 0) {
    tg__err(TG_EINVAL, "%s: epoch is %d; it must be >= 0", fn, epoch);
    return NAN;
  }
  if (!isfinite(gamma) || gamma <= 0) {
    tg__err(TG_EINVAL, "%s: gamma is %g; it must be finite and > 0", fn, gamma);
    return NAN;
  }
  return base * pow(gamma, (double)(epoch / step_size));
}

double tg_lr_cosine(double base, int epoch, int total_epochs, double min_lr) {
  static const char fn[] = "tg_lr_cosine";
  if (!isfinite(base) || base < 0) {
    tg__err(TG_EINVAL, "%s: base is %g; it must be finite and >= 0", fn, base);
    return NAN;
  }
  if (total_epochs < 1) {
    tg__err(TG_EINVAL, "%s: total_epochs is %d; it must be at least 1", fn,
            total_epochs);
    return NAN;
  }
  if (epoch < 0) {
    tg__err(TG_EINVAL, "%s: epoch is %d; it must be >= 0", fn, epoch);
    return NAN;
  }
  if (!(min_lr >= 0 && min_lr <= base)) {
    tg__err(TG_EINVAL, "%s: min_lr is %g; it must be in [0, base = %g]", fn,
            min_lr, base);
    return NAN;
  }
  if (epoch >= total_epochs) return min_lr;
  const double pi = 3.14159265358979323846;
  return min_lr +
         (base - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2;
}

double tg_lr_warmup_cosine(double lr_max, int64_t step, int64_t warmup,
                           int64_t total, double lr_min) {
  static const char fn[] = "tg_lr_warmup_cosine";
  if (!isfinite(lr_max) || lr_max < 0) {
    tg__err(TG_EINVAL, "%s: lr_max is %g; it must be finite and >= 0", fn,
            lr_max);
    return NAN;
  }
  if (!(lr_min >= 0 && lr_min <= lr_max)) {
    tg__err(TG_EINVAL, "%s: lr_min is %g; it must be in [0, lr_max = %g]", fn,
            lr_min, lr_max);
    return NAN;
  }
  if (total < 1) {
    tg__err(TG_EINVAL, "%s: total is %lld; it must be at least 1", fn,
            (long long)total);
    return NAN;
  }
  if (warmup < 0 || warmup > total) {
    tg__err(TG_EINVAL, "%s: warmup is %lld; it must be in [0, total = %lld]",
            fn, (long long)warmup, (long long)total);
    return NAN;
  }
  if (step < 0) {
    tg__err(TG_EINVAL, "%s: step is %lld; it must be >= 0", fn,
            (long long)step);
    return NAN;
  }
  if (step > total) return lr_min;
  if (warmup > 0 && step <= warmup)
    return lr_max * (double)step / (double)warmup;
  const double pi = 3.14159265358979323846;
  double frac = (double)(step - warmup) / (double)(total - warmup);
  return lr_min + (lr_max - lr_min) * (1 + cos(pi * frac)) / 2;
}
