/* examples/softmax_nll_explain.c: why the gradient of the log-likelihood
 * cost with respect to the logits is a - y, although the cost C = -ln a_y
 * looks at the target's probability only.
 *
 * The cost depends on a_y alone, so dC/da is zero except at the target. But
 * a_y = e^{z_y} / sum_i e^{z_i} depends on every logit z_j, so the chain
 * rule through softmax spreads that one non-zero entry over all of z:
 *   dC/dz_j = sum_i dC/da_i * da_i/dz_j = (-1/a_y) * a_y (1[j=y] - a_j)
 *           = a_j - y_j.
 * This program builds the cost both ways on the tape and prints every piece. */
#include <stdio.h>

#include "tapegrad.h"

enum { N = 2, C = 4 };

static void show(const char *label, tg_tensor *t, const double *v) {
  printf("%-34s", label);
  for (int i = 0; i < N; i++) {
    printf(i ? "  |" : " ");
    for (int j = 0; j < C; j++) printf(" % .4f", v ? v[i * C + j] : tg_get(t, i * C + j));
  }
  printf("\n");
}

int main(void) {
  const double zv[N * C] = {2.0, 1.0, 0.1, -1.0, 0.5, 0.5, 3.0, -2.0};
  const int32_t yv[N] = {0, 1};
  tg_tensor *z = tg_tensor_from(TG_F64, TG_SHAPE(N, C), zv);
  tg_tensor *y = tg_tensor_from(TG_I32, TG_SHAPE(N), yv);
  tg_tape *t = tg_tape_new();
  if (!z || !y || !t || tg_requires_grad(z, true)) {
    fprintf(stderr, "setup failed: %s\n", tg_last_error());
    return 1;
  }

  /* Composed: C = mean over the batch of -ln a[i, y_i], a = softmax(z). */
  tg_tensor *a = tg_softmax(t, z);
  tg_tensor *loss = tg_mean(t, tg_neg(t, tg_pick(t, tg_log(t, a), y)));
  if (!loss || tg_backward(t, loss)) {
    fprintf(stderr, "composed graph failed: %s\n", tg_last_error());
    return 1;
  }
  double da[N * C], dz_composed[N * C], a_minus_y[N * C], onehot[N * C] = {0};
  for (int k = 0; k < N * C; k++) {
    da[k] = tg_grad_get(a, k);
    dz_composed[k] = tg_grad_get(z, k);
  }
  for (int i = 0; i < N; i++) onehot[i * C + yv[i]] = 1;
  for (int k = 0; k < N * C; k++) a_minus_y[k] = (tg_get(a, k) - onehot[k]) / N;
  double composed_loss = tg_get(loss, 0);

  /* Fused: one op, one stable pass, gradient (softmax(z) - y)/N. */
  tg_zero_grad(z);
  tg_tensor *fused = tg_softmax_nll(t, z, y);
  if (!fused || tg_backward(t, fused)) {
    fprintf(stderr, "fused op failed: %s\n", tg_last_error());
    return 1;
  }

  printf("A batch of N = %d rows, C = %d classes; rows separated by |.\n\n", N, C);
  show("z (logits)", z, NULL);
  show("a = softmax(z)", a, NULL);
  show("y (one-hot target)", NULL, onehot);
  printf("\ncost: composed %.6f, fused %.6f\n\n", composed_loss, tg_get(fused, 0));
  show("composed dC/da", NULL, da);
  show("composed dC/dz", NULL, dz_composed);
  double dz_fused[N * C];
  for (int k = 0; k < N * C; k++) dz_fused[k] = tg_grad_get(z, k);
  show("fused    dC/dz", NULL, dz_fused);
  show("(a - y) / N", NULL, a_minus_y);
  printf("\n"
         "dC/da is zero except at the target class, where it is -1/(N a_y):\n"
         "the cost only looks at a_y. Yet dC/dz is non-zero everywhere and\n"
         "equals (a - y)/N, because softmax makes every a_i depend on every z_j.\n"
         "The fused op gives the same gradient without taking log(softmax).\n");
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(y);
  return 0;
}
