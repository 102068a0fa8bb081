/* examples/algebra_model.c: a model that is not a plain MLP, written with
 * the tensor algebra: a residual block with layer norm, GELU and dropout,
 * trained on a synthetic three-arm spiral, with the log-likelihood loss
 * composed as -mean(pick(log_softmax(z))) and checked against the fused
 * tg_softmax_nll at every step (the two must agree to rounding).
 *
 *   h   = layer_norm(x W0 + b0)
 *   r   = h + dropout(gelu(h W1 + b1))         (a residual connection)
 *   z   = r W2 + b2
 *   C   = -mean_i log_softmax(z)_i[y_i]
 *
 * Usage: algebra_model [--steps N] [--seed N]. Prints the loss now and
 * then and the final training accuracy; exits 1 if the composed and fused
 * losses or gradients ever disagree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

enum { N = 384, D = 32, K = 3 };

/* Three interleaved spiral arms in the plane, a little noise. */
static void spiral(tg_tensor *x, tg_tensor *y, tg_rng *rng) {
  for (int i = 0; i < N; i++) {
    int k = i % K;
    const double pi = 3.14159265358979323846;
    double r = (double)(i / K) / (N / K), a = 4.0 * r + 2.0 * pi * k / K;
    tg_set(x, 2 * i, r * sin(a) + 0.02 * tg_rng_normal(rng));
    tg_set(x, 2 * i + 1, r * cos(a) + 0.02 * tg_rng_normal(rng));
    tg_set(y, i, k);
  }
}

typedef struct {
  tg_tensor *W0, *b0, *W1, *b1, *W2, *b2, *g, *beta;
} model;

static tg_tensor *param(tg_dtype dt, int ndim, const int64_t *shape, tg_rng *rng,
                        double std) {
  tg_tensor *p = tg_zeros(dt, ndim, shape);
  if (p && std > 0) tg_fill_normal(p, rng, 0, std);
  if (p) tg_requires_grad(p, true);
  return p;
}

/* The logits of the whole batch; dropout only while training. */
static tg_tensor *logits(tg_tape *t, const model *m, tg_tensor *x, tg_rng *drop,
                         bool training) {
  tg_tensor *h = tg_layer_norm(t, tg_linear(t, x, m->W0, m->b0, TG_ACT_NONE),
                               m->g, m->beta, 1e-5);
  tg_tensor *f = tg_gelu(t, tg_linear(t, h, m->W1, m->b1, TG_ACT_NONE));
  tg_tensor *r = tg_add(t, h, tg_dropout(t, f, 0.1, drop, training));
  return tg_linear(t, r, m->W2, m->b2, TG_ACT_NONE);
}

int main(int argc, char **argv) {
  long steps = 600, seed = 1;
  for (int i = 1; i < argc; i++) {
    char *end = NULL;
    long *dst = !strcmp(argv[i], "--steps") ? &steps : !strcmp(argv[i], "--seed") ? &seed : NULL;
    if (dst && i + 1 < argc) *dst = strtol(argv[++i], &end, 10);
    if (!dst || !end || *end || *dst < 0) {
      fprintf(stderr, "usage: %s [--steps N] [--seed N]\n", argv[0]);
      return 2;
    }
  }
  const tg_dtype dt = TG_F64;
  tg_rng rng, drop;
  tg_rng_seed(&rng, (uint64_t)seed);
  tg_rng_seed(&drop, (uint64_t)seed + 1);
  tg_tensor *x = tg_zeros(dt, TG_SHAPE(N, 2)), *y = tg_zeros(TG_I32, TG_SHAPE(N));
  spiral(x, y, &rng);
  model m = {
      param(dt, TG_SHAPE(2, D), &rng, 1.0),   param(dt, TG_SHAPE(D), &rng, 0),
      param(dt, TG_SHAPE(D, D), &rng, 0.2),   param(dt, TG_SHAPE(D), &rng, 0),
      param(dt, TG_SHAPE(D, K), &rng, 0.2),   param(dt, TG_SHAPE(K), &rng, 0),
      param(dt, TG_SHAPE(D), &rng, 0),        param(dt, TG_SHAPE(D), &rng, 0)};
  tg_fill(m.g, 1.0);
  tg_tensor *ps[] = {m.W0, m.b0, m.W1, m.b1, m.W2, m.b2, m.g, m.beta};
  const int np = (int)(sizeof ps / sizeof *ps);
  tg_adam_config cfg = TG_ADAM_DEFAULTS;
  cfg.lr = 0.01;
  tg_optim *opt = tg_adam_new(ps, np, &cfg);
  tg_tape *t = tg_tape_new();
  int rc = 1;
  if (!x || !y || !opt || !t) goto fail;

  for (long s = 0; s <= steps; s++) {
    /* The fused loss's gradient of the logits, then the composed one's. */
    tg_tensor *z = logits(t, &m, x, &drop, true);
    tg_tensor *fused = tg_softmax_nll(t, z, y);
    tg_tensor *lp = tg_log_softmax(t, z, 1);
    tg_tensor *composed = tg_neg(t, tg_mean(t, tg_pick(t, lp, y)));
    if (!fused || !composed) goto fail;
    if (tg_backward(t, fused)) goto fail;
    tg_tensor *gz = tg_tensor_grad(z);
    double *dz_fused = malloc((size_t)N * K * sizeof *dz_fused);
    if (!gz || !dz_fused) goto fail;
    memcpy(dz_fused, tg_tensor_f64(gz), (size_t)N * K * sizeof *dz_fused);
    tg_optim_zero_grad(opt);
    if (tg_backward(t, composed)) {
      free(dz_fused);
      goto fail;
    }
    double worst = fabs(tg_get(fused, 0) - tg_get(composed, 0));
    for (int i = 0; i < N * K; i++) worst = fmax(worst, fabs(dz_fused[i] - tg_get(gz, i)));
    free(dz_fused);
    if (worst > 1e-12) {
      fprintf(stderr, "step %ld: the composed and fused losses differ by %g\n", s, worst);
      goto done;
    }
    if (s % 100 == 0) printf("step %4ld  loss %.4f\n", s, tg_get(composed, 0));
    if (s < steps && tg_optim_step(opt)) goto fail;
    tg_optim_zero_grad(opt);
    tg_tape_clear(t);
  }
  tg_tape_set_grad(t, false); /* evaluation: no dropout, nothing recorded */
  tg_tape_clear(t);
  double acc = tg_accuracy(logits(t, &m, x, NULL, false), y);
  if (acc < 0) goto fail;
  printf("training accuracy %.2f%% (composed and fused losses agreed at every step)\n",
         100 * acc);
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "algebra_model: %s\n", tg_last_error());
done:
  tg_tape_free(t);
  tg_optim_free(opt);
  for (int i = 0; i < np; i++) tg_tensor_free(ps[i]);
  tg_tensor_free(x);
  tg_tensor_free(y);
  return rc;
}
