/* examples/softmax_nll_explain.c: why the gradient of the log-likelihood
 * cost with respect to the logits is a - y, although the cost C = -ln a_y
 * looks at the target's probability only.
 *
 * The cost depends on a_y alone, so dC/da is zero except at the target. But
 * a_y = e^{z_y} / sum_i e^{z_i} depends on every logit z_j, so the chain
 * rule through softmax spreads that one non-zero entry over all of z:
 *   dC/dz_j = sum_i dC/da_i * da_i/dz_j = (-1/a_y) * a_y (1[j=y] - a_j)
 *           = a_j - y_j.
 * This program builds the cost both ways on the tape and prints every piece;
 * with --svg FILE it also draws row 0 as four bar charts side by side: a, y,
 * the composed dC/da (one bar) and dC/dz (every bar). */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* One panel: C bars of v from a zero line, scaled to the panel's largest
 * magnitude, each labelled with its class and value. */
static void panel(FILE *f, double x0, const char *title, const char *note,
                  const double *v, int target) {
  const double w = 200, top = 70, h = 220, mid = top + h / 2;
  double m = 0;
  for (int j = 0; j < C; j++) m = fmax(m, fabs(v[j]));
  if (m == 0) m = 1;
  fprintf(f, "<text x='%.0f' y='40' font-size='15' font-weight='bold' "
             "text-anchor='middle'>%s</text>\n", x0 + w / 2, title);
  fprintf(f, "<text x='%.0f' y='58' font-size='11' fill='#555' "
             "text-anchor='middle'>%s</text>\n", x0 + w / 2, note);
  fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#333'/>\n",
          x0, mid, x0 + w, mid);
  for (int j = 0; j < C; j++) {
    double bw = w / C * 0.6, bx = x0 + (j + 0.2) * w / C;
    double bh = fabs(v[j]) / m * (h / 2 - 14);
    double by = v[j] >= 0 ? mid - bh : mid;
    fprintf(f, "<rect class='bar' x='%.1f' y='%.1f' width='%.1f' height='%.1f' "
               "fill='%s'/>\n", bx, by, bw, bh, j == target ? "#c0392b" : "#2e86c1");
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>"
               "%+.3f</text>\n", bx + bw / 2, v[j] >= 0 ? by - 3 : by + bh + 11, v[j]);
    fprintf(f, "<text x='%.1f' y='%.0f' font-size='11' text-anchor='middle'>"
               "j=%d%s</text>\n", bx + bw / 2, top + h + 16, j, j == target ? " (y)" : "");
  }
}

/* Row 0 as an SVG, replaced atomically (tg_textfile): a reader never sees
 * half a picture, and a device or read-only file is left as it is. */
static int write_svg(const char *path, const double *a, const double *y,
                     const double *da, const double *dz, int target) {
  tg_textfile *tf = tg_textfile_open(path);
  FILE *f = tg_textfile_stream(tf);
  if (!f) {
    fprintf(stderr, "softmax_nll_explain: cannot write %s: %s\n", path, tg_last_error());
    return 1;
  }
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='920' height='360' "
             "font-family='Helvetica, Arial, sans-serif'>\n"
             "<rect width='100%%' height='100%%' fill='white'/>\n");
  panel(f, 20, "a = softmax(z)", "every class has some probability", a, target);
  panel(f, 245, "y (one-hot)", "the target class", y, target);
  panel(f, 470, "dC/da (composed)", "C = -ln a_y sees a_y only", da, target);
  panel(f, 695, "dC/dz = (a - y)/N", "softmax spreads it over all z_j", dz, target);
  fprintf(f, "<text x='460' y='345' font-size='12' text-anchor='middle' fill='#333'>"
             "Row 0 of the batch; the target class in red. dC/da has one non-zero "
             "bar, dC/dz has all of them.</text>\n</svg>\n");
  if (tg_textfile_commit(tf)) {
    fprintf(stderr, "softmax_nll_explain: cannot write %s: %s\n", path, tg_last_error());
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *svg = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--svg") && i + 1 < argc) {
      svg = argv[++i];
    } else {
      fprintf(stderr, "usage: %s [--svg FILE]\n", argv[0]);
      return 2;
    }
  }
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
  int rc = 0;
  if (svg) {
    double a0[C];
    for (int j = 0; j < C; j++) a0[j] = tg_get(a, j);
    rc = write_svg(svg, a0, onehot, da, dz_composed, yv[0]);
    if (!rc) printf("\nrow 0 drawn in %s\n", svg);
  }
  tg_tape_free(t);
  tg_tensor_free(z);
  tg_tensor_free(y);
  return rc;
}
