/* src/engine/gradcheck.c: central differences in float64 against the engine's
 * backward pass, for any function of parameters recorded on a tape. */
#include <math.h>
#include <string.h>

#include "engine.h"

typedef struct {
  tg_fn f;
  void *ctx;
  tg_tensor *const *params;
  int n;
  tg_tape *tape;
  const double *r; /* weights of the output elements, NULL for a scalar */
} problem;

/* Calls f; a NULL result gets a message naming tg_gradcheck and, when f's
 * own call recorded one, that message (never one older than the call). */
static tg_tensor *call(tg_fn f, tg_tape *t, tg_tensor *const *params, void *ctx) {
  tg_clear_error();
  tg_tensor *out = f(t, params, ctx);
  if (out) return out;
  int st = tg_last_status();
  if (st) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", tg_last_error());
    tg__err(st, "tg_gradcheck: the function returned NULL after: %s", msg);
  } else {
    tg__err(TG_EINVAL, "tg_gradcheck: the function returned NULL and recorded no error");
  }
  return NULL;
}

/* Runs f once and returns sum(r * out), or NAN with the error recorded. */
static double objective(problem *p) {
  tg_tape_clear(p->tape);
  tg_tensor *out = call(p->f, p->tape, p->params, p->ctx);
  if (!out) return NAN;
  if (out->dtype != TG_F64) {
    tg__err(TG_EDTYPE, "tg_gradcheck: the function returned %s; it must be float64",
            tg_dtype_name(out->dtype));
    return NAN;
  }
  const double *y = out->data;
  double s = 0;
  for (int64_t i = 0; i < out->numel; i++) s += (p->r ? p->r[i] : 1.0) * y[i];
  return s;
}

int tg_gradcheck(tg_fn f, void *ctx, tg_tensor *const *params, int n_params,
                 double eps, tg_gradcheck_result *res) {
  if (!f || !params || n_params < 1 || !res)
    return tg__err(TG_EINVAL, "tg_gradcheck: f, params (n_params >= 1) and res are required");
  for (int k = 0; k < n_params; k++) {
    const tg_tensor *x = params[k];
    if (!x) return tg__err(TG_EINVAL, "tg_gradcheck: params[%d] is NULL", k);
    if (x->dtype != TG_F64)
      return tg__err(TG_EDTYPE, "tg_gradcheck: params[%d] is %s; gradient checks run in float64",
                     k, tg_dtype_name(x->dtype));
    if (!(x->flags & TG__REQ_GRAD))
      return tg__err(TG_EINVAL, "tg_gradcheck: params[%d] does not require grad", k);
  }
  if (!(eps > 0)) eps = 1e-6;
  memset(res, 0, sizeof *res);

  int rc = TG_OK;
  problem p = {f, ctx, params, n_params, tg_tape_new(), NULL};
  double **saved = tg__calloc((size_t)n_params, sizeof *saved);
  double *r = NULL;
  if (!p.tape || !saved) {
    rc = tg__err(TG_ENOMEM, "tg_gradcheck: out of memory");
    goto done;
  }
  /* Keep the caller's accumulated grads; start from zero. */
  for (int k = 0; k < n_params; k++) {
    size_t bytes = (size_t)params[k]->numel * sizeof(double);
    if (!(saved[k] = tg__malloc(bytes))) {
      rc = tg__err(TG_ENOMEM, "tg_gradcheck: out of memory");
      goto done;
    }
    memcpy(saved[k], params[k]->grad, bytes);
    memset(params[k]->grad, 0, bytes);
  }

  tg_tensor *out = call(f, p.tape, params, ctx);
  if (!out) {
    rc = tg_last_status();
    goto done;
  }
  if (out->numel > 1) {
    tg_rng rng;
    tg_rng_seed(&rng, 0x6772616463686b);
    tg_tensor *rt = tg_zeros(TG_F64, out->ndim, out->shape);
    if (!rt) {
      rc = tg_last_status();
      goto done;
    }
    tg_fill_uniform(rt, &rng, 0.5, 1.5);
    rc = tg_backward_grad(p.tape, out, rt);
    if (!rc && (r = tg__malloc((size_t)out->numel * sizeof *r)))
      memcpy(r, rt->data, (size_t)out->numel * sizeof *r);
    else if (!rc)
      rc = tg__err(TG_ENOMEM, "tg_gradcheck: out of memory");
    tg_tensor_free(rt);
  } else {
    rc = tg_backward(p.tape, out);
  }
  if (rc) goto done;
  p.r = r;

  res->max_rel_err = 0;
  for (int k = 0; k < n_params && !rc; k++) {
    double *x = params[k]->data;
    const double *g = params[k]->grad;
    for (int64_t i = 0; i < params[k]->numel; i++) {
      double x0 = x[i];
      x[i] = x0 + eps;
      double up = objective(&p);
      x[i] = x0 - eps;
      double down = objective(&p);
      x[i] = x0;
      if (isnan(up) || isnan(down)) {
        rc = tg_last_status() ? tg_last_status() : TG_ENONFINITE;
        break;
      }
      double num = (up - down) / (2 * eps);
      double scale = fmax(fmax(fabs(g[i]), fabs(num)), 1e-2);
      double err = fabs(g[i] - num) / scale;
      /* A NaN error is the worst there is: it is kept once found. */
      if (isnan(res->max_rel_err)) continue;
      if (isnan(err) || err > res->max_rel_err) {
        res->max_rel_err = err;
        res->param = k;
        res->index = i;
        res->analytic = g[i];
        res->numeric = num;
      }
    }
  }

done:
  if (saved)
    for (int k = 0; k < n_params; k++)
      if (saved[k]) {
        memcpy(params[k]->grad, saved[k], (size_t)params[k]->numel * sizeof(double));
        tg__free(saved[k]);
      }
  tg__free(saved);
  tg__free(r);
  tg_tape_free(p.tape);
  return rc;
}
