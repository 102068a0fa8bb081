/* examples/custom_model.c: a model written from scratch against the graph
 * API: a 2-64-64-2 tanh network that learns to separate two interleaved
 * spirals, trained with minibatch SGD + momentum written out by hand so
 * every use of a gradient is visible.
 *
 * Usage: custom_model [steps]   (default 3000) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad.h"

enum { PER_CLASS = 500, NPTS = 2 * PER_CLASS, HID = 64, BATCH = 50 };
static const double PI = 3.14159265358979323846;

/* Two spirals, r growing with the angle; class 1 is class 0 turned by pi. */
static void make_spirals(tg_rng *rng, float *x, int32_t *y) {
  for (int i = 0; i < NPTS; i++) {
    int cls = i % 2;
    double s = (double)(i / 2) / PER_CLASS;      /* 0..1 along the arm */
    double angle = 3.0 * PI * s + cls * PI;  /* one and a half turns */
    double r = 3.0 * (0.1 + 0.9 * s); /* inputs of order 1 */
    x[2 * i] = (float)(r * cos(angle) + 0.05 * tg_rng_normal(rng));
    x[2 * i + 1] = (float)(r * sin(angle) + 0.05 * tg_rng_normal(rng));
    y[i] = cls;
  }
}

typedef struct {
  tg_tensor *W1, *b1, *W2, *b2, *W3, *b3;
} model;

static tg_tensor *param(tg_rng *rng, int64_t rows, int64_t cols) {
  tg_tensor *p = cols ? tg_zeros(TG_F32, TG_SHAPE(rows, cols))
                      : tg_zeros(TG_F32, TG_SHAPE(rows));
  if (p && cols) tg_init_xavier(p, rng);
  if (p) tg_requires_grad(p, true);
  return p;
}

/* The model is a function that records its forward pass on the tape. */
static tg_tensor *logits(tg_tape *t, const model *m, tg_tensor *x) {
  tg_tensor *h = tg_tanh(t, tg_add(t, tg_matmul(t, x, m->W1), m->b1));
  h = tg_tanh(t, tg_add(t, tg_matmul(t, h, m->W2), m->b2));
  return tg_add(t, tg_matmul(t, h, m->W3), m->b3);
}

int main(int argc, char **argv) {
  int steps = argc > 1 ? atoi(argv[1]) : 3000;
  if (steps < 1) {
    fprintf(stderr, "usage: %s [steps >= 1]\n", argv[0]);
    return 2;
  }
  tg_rng rng;
  tg_rng_seed(&rng, 42);
  static float xs[NPTS * 2];
  static int32_t ys[NPTS];
  make_spirals(&rng, xs, ys);
  tg_tensor *X = tg_tensor_from(TG_F32, TG_SHAPE(NPTS, 2), xs);
  tg_tensor *Y = tg_tensor_from(TG_I32, TG_SHAPE(NPTS), ys);
  tg_tensor *xb = tg_zeros(TG_F32, TG_SHAPE(BATCH, 2));
  tg_tensor *yb = tg_zeros(TG_I32, TG_SHAPE(BATCH));

  model m = {param(&rng, 2, HID), param(&rng, HID, 0), param(&rng, HID, HID),
             param(&rng, HID, 0), param(&rng, HID, 2), param(&rng, 2, 0)};
  tg_tensor *params[] = {m.W1, m.b1, m.W2, m.b2, m.W3, m.b3};
  enum { NP = sizeof params / sizeof *params };
  tg_tensor *vel[NP];
  for (int k = 0; k < NP; k++) vel[k] = tg_tensor_clone(params[k]);
  tg_tape *t = tg_tape_new();
  for (int k = 0; k < NP; k++)
    if (!params[k] || !vel[k]) {
      fprintf(stderr, "setup failed: %s\n", tg_last_error());
      return 1;
    }
  for (int k = 0; k < NP; k++) tg_fill(vel[k], 0);

  const float lr = 0.05f, mu = 0.9f;
  for (int step = 1; step <= steps; step++) {
    for (int i = 0; i < BATCH; i++) { /* a random minibatch */
      uint64_t j = tg_rng_below(&rng, NPTS);
      tg_tensor_f32(xb)[2 * i] = xs[2 * j];
      tg_tensor_f32(xb)[2 * i + 1] = xs[2 * j + 1];
      tg_tensor_i32(yb)[i] = ys[j];
    }
    tg_tensor *loss = tg_softmax_nll(t, logits(t, &m, xb), yb);
    if (!loss || tg_backward(t, loss)) {
      fprintf(stderr, "step %d: %s\n", step, tg_last_error());
      return 1;
    }
    if (step % 500 == 0) printf("step %5d  loss %.4f\n", step, tg_get(loss, 0));
    for (int k = 0; k < NP; k++) { /* v = mu v + g; w -= lr v; g = 0 */
      float *w = tg_tensor_f32(params[k]);
      float *g = tg_tensor_f32(tg_tensor_grad(params[k]));
      float *v = tg_tensor_f32(vel[k]);
      for (int64_t i = 0; i < tg_tensor_numel(params[k]); i++) {
        v[i] = mu * v[i] + g[i];
        w[i] -= lr * v[i];
      }
      tg_zero_grad(params[k]);
    }
    tg_tape_clear(t);
  }

  /* Evaluate on every point with recording off. */
  tg_tape_set_grad(t, false);
  tg_tensor *z = logits(t, &m, X);
  int correct = 0;
  for (int i = 0; i < NPTS; i++)
    correct += (tg_get(z, 2 * i + 1) > tg_get(z, 2 * i)) == (ys[i] == 1);
  double acc = 100.0 * correct / NPTS;
  printf("accuracy on the %d spiral points: %.1f%%\n", NPTS, acc);

  tg_tape_free(t);
  for (int k = 0; k < NP; k++) {
    tg_tensor_free(params[k]);
    tg_tensor_free(vel[k]);
  }
  tg_tensor_free(X);
  tg_tensor_free(Y);
  tg_tensor_free(xb);
  tg_tensor_free(yb);
  return acc >= 98.0 ? 0 : 1;
}
