/* bench/conv.c: GFLOP/s of tg_conv2d's three products (the forward, the
 * input gradient and the weight gradient) on the layer shapes of the MNIST
 * CNNs, on 1 and 2 threads, beside the machine's FMA ceiling as bench/gemm
 * measures it. Public API only: each figure is the whole op as training
 * runs it (im2col, col2im and the GEMMs), no bias. Usage: bench/conv
 * [--cpu-time] [reps] (median of reps timings, default 7). --cpu-time
 * times by the calling thread's CPU time and runs one thread only, so
 * other load on a busy machine counts less. The last line is
 * machine-readable:
 *   conv-vs-ceiling: conv2@1 fwd=F dx=F dw=F
 * with F = GFLOP/s / the one-thread FMA ceiling for the larger CNN layer. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "tapegrad.h"

typedef struct {
  const char *name;
  int64_t n, c, h, w, k, r, s;
  int pad;
} layer;

static const layer layers[] = {
    /* the CNN graph planned: conv 32@5x5, pool, conv 64@5x5, pool; batch 64 */
    {"conv1", 64, 1, 28, 28, 32, 5, 5, 2},
    {"conv2", 64, 32, 14, 14, 64, 5, 5, 2},
    /* Nielsen's chapter 6 network, batch 10, valid convolutions */
    {"nielsen1", 10, 1, 28, 28, 20, 5, 5, 0},
    {"nielsen2", 10, 20, 12, 12, 40, 5, 5, 0},
};
#define NLAYERS (sizeof layers / sizeof *layers)

enum { FWD, DX, DW, NPROD };
static const char *const prod_names[NPROD] = {"fwd", "dx", "dw"};

typedef struct {
  const layer *l;
  tg_tape *t;
  tg_tensor *x, *w, *y, *g;
  int prod;
} run;

static tg_tensor *conv(run *r) {
  int p = r->l->pad;
  return tg_conv2d(r->t, r->x, r->w, NULL, 1, 1, p, p, 1, 1, 1);
}

/* One call of the product: a forward on a tape that records nothing, or a
 * backward pass over the recorded forward (only x, or only w, wants a
 * gradient, so that pass runs that one product). */
static int once(run *r) {
  if (r->prod == FWD) {
    tg_tensor *y = conv(r);
    tg_tape_clear(r->t);
    return y ? TG_OK : tg_last_status();
  }
  return tg_backward_grad(r->t, r->y, r->g);
}

static double flops(const layer *l) {
  int64_t ho = l->h + 2 * l->pad - l->r + 1, wo = l->w + 2 * l->pad - l->s + 1;
  return 2.0 * (double)l->n * (double)l->k * (double)(ho * wo) *
         (double)(l->c * l->r * l->s);
}

/* Median GFLOP/s over reps timings, each of enough calls to last ~50 ms. */
static double measure(const layer *l, int prod, int reps) {
  int64_t xs[4] = {l->n, l->c, l->h, l->w}, ws[4] = {l->k, l->c, l->r, l->s};
  run r = {l, tg_tape_new(), tg_zeros(TG_F32, 4, xs), tg_zeros(TG_F32, 4, ws),
           NULL, NULL, prod};
  double med = -1;
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  if (!r.t || !r.x || !r.w || tg_fill_normal(r.x, &rng, 0, 1) ||
      tg_fill_normal(r.w, &rng, 0, 0.1))
    goto done;
  if (prod == FWD) {
    tg_tape_set_grad(r.t, false);
  } else {
    tg_requires_grad(prod == DX ? r.x : r.w, true);
    r.y = conv(&r);
    if (!r.y) goto done;
    int64_t ys[4];
    for (int i = 0; i < 4; i++) ys[i] = tg_tensor_dim(r.y, i);
    r.g = tg_zeros(TG_F32, 4, ys);
    if (!r.g || tg_fill_normal(r.g, &rng, 0, 1)) goto done;
  }
  if (once(&r)) goto done; /* warms the arena and the packing buffers */
  double t0 = tick();
  if (once(&r)) goto done;
  double one = tick() - t0;
  int calls = one > 0.05 ? 1 : (int)(0.05 / (one > 1e-7 ? one : 1e-7)) + 1;
  double v[64];
  if (reps > 64) reps = 64;
  for (int i = 0; i < reps; i++) {
    t0 = tick();
    for (int c = 0; c < calls; c++)
      if (once(&r)) goto done;
    v[i] = flops(l) * calls / (tick() - t0) * 1e-9;
  }
  qsort(v, (size_t)reps, sizeof *v, cmp_double);
  med = v[reps / 2];
done:
  if (med < 0) fprintf(stderr, "bench/conv: %s: %s\n", l->name, tg_last_error());
  tg_tape_free(r.t);
  tg_tensor_free(r.x);
  tg_tensor_free(r.w);
  tg_tensor_free(r.g);
  return med;
}

int main(int argc, char **argv) {
  int a = 1;
  if (argc > 1 && !strcmp(argv[1], "--cpu-time")) cpu_time = true, a++;
  int reps = argc > a ? atoi(argv[a]) : 7;
  if (reps < 1) reps = 1;
  int most_thr = cpu_time ? 1 : 2;
  printf("%-9s %-15s %-13s %3s %3s %7s %8s %8s %8s  (GFLOP/s)\n", "layer", "x",
         "w", "pad", "thr", "GFLOP", "fwd", "dx", "dw");
  double conv2[3][NPROD] = {{0}};
  for (int thr = 1; thr <= most_thr; thr++) {
    if (tg_set_num_threads(thr)) return 1;
    for (size_t i = 0; i < NLAYERS; i++) {
      const layer *l = &layers[i];
      char xs[32], ws[32];
      snprintf(xs, sizeof xs, "[%lld,%lld,%lld,%lld]", (long long)l->n,
               (long long)l->c, (long long)l->h, (long long)l->w);
      snprintf(ws, sizeof ws, "[%lld,%lld,%lld,%lld]", (long long)l->k,
               (long long)l->c, (long long)l->r, (long long)l->s);
      double g[NPROD];
      for (int p = 0; p < NPROD; p++) {
        g[p] = measure(l, p, reps);
        if (g[p] < 0) return 1;
        if (!strcmp(l->name, "conv2")) conv2[thr][p] = g[p];
      }
      printf("%-9s %-15s %-13s %3d %3d %7.3f %8.1f %8.1f %8.1f\n", l->name, xs,
             ws, l->pad, thr, flops(l) * 1e-9, g[FWD], g[DX], g[DW]);
      fflush(stdout);
    }
  }
  double ceil1 = 0;
  for (int thr = 1; thr <= most_thr; thr++) {
    const char *isa = NULL;
    double peak = fma_ceiling(thr, reps, &isa);
    if (thr == 1) ceil1 = peak;
    if (peak > 0)
      printf("FMA ceiling (%s, %d thread%s): %.1f GFLOP/s; conv2 fwd %.0f%%, "
             "dx %.0f%%, dw %.0f%% of it\n", isa, thr, thr > 1 ? "s" : "",
             peak, 100 * conv2[thr][FWD] / peak, 100 * conv2[thr][DX] / peak,
             100 * conv2[thr][DW] / peak);
  }
  if (ceil1 > 0)
    printf("conv-vs-ceiling: conv2@1 %s=%.2f %s=%.2f %s=%.2f\n",
           prod_names[FWD], conv2[1][FWD] / ceil1, prod_names[DX],
           conv2[1][DX] / ceil1, prod_names[DW], conv2[1][DW] / ceil1);
  else
    printf("conv-vs-ceiling: no FMA ceiling on this CPU\n");
  return 0;
}
