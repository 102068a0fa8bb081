/* bench/elementwise.c: an elementwise op's forward and backward kernels
 * (a unary one, or a binary one on equal shapes),
 * ns per element, on each vector path the CPU runs (TG_SIMD's generic,
 * avx2, avx512). Runs the op's kernels on a node of its own, so the times
 * leave out the op door and the tape.
 *   bench/elementwise [--op NAME] [--n N | --shape D0,D1,...] [--reps R]
 *                     [--cpu-time]
 * --shape: the inputs' shape (default [N]), for ops of rows such as
 * softmax_causal, which needs [..., Tq, Tk].
 * --cpu-time: this thread's CPU time (with OMP_NUM_THREADS=1: the cost of
 * the work, which a busy machine disturbs less than wall time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/op.h"

/* (bench.h's FMA ceiling, unused here, would not build under -Werror) */
static bool cpu_time;
static double tick(void) {
  struct timespec ts;
  clock_gettime(cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *name = "gelu";
  int64_t n = 4 << 20;
  int reps = 11, ndim = 1;
  int64_t shape[TG_MAX_DIMS];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--op") && i + 1 < argc) name = argv[++i];
    else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
      char *e = argv[++i];
      ndim = 0;
      n = 1;
      while (*e && ndim < TG_MAX_DIMS) {
        shape[ndim] = strtoll(e, &e, 10);
        if (shape[ndim] < 1) return 2;
        n *= shape[ndim++];
        if (*e == ',') e++;
        else if (*e) return 2;
      }
      if (*e || !ndim) return 2;
    }
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--cpu-time")) cpu_time = true;
    else {
      fprintf(stderr, "usage: %s [--op NAME] [--n N | --shape D0,D1,...] "
              "[--reps R] [--cpu-time]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1 || reps > 101 || n < 1) return 2;
  const tg_opdef *op = NULL;
  for (int k = 0; k < tg__n_ops; k++)
    if (!strcmp(tg__ops[k]->name, name)) op = tg__ops[k];
  if (!op || op->n_in < 1 || op->n_in > 2) {
    fprintf(stderr, "%s: no elementwise op %s\n", argv[0], name);
    return 2;
  }
  if (ndim == 1) shape[0] = n;
  tg_tensor *in[2] = {tg_zeros(TG_F32, ndim, shape),
                      tg_zeros(TG_F32, ndim, shape)};
  tg_tensor *y = tg_zeros(TG_F32, ndim, shape);
  tg_rng rng;
  tg_rng_seed(&rng, 1);
  if (!in[0] || !in[1] || !y || tg_fill_normal(in[0], &rng, 0, 2) ||
      tg_fill_normal(in[1], &rng, 0, 2) || tg_requires_grad(in[0], true) ||
      tg_requires_grad(in[1], true) || tg_requires_grad(y, true)) {
    fprintf(stderr, "%s: %s\n", argv[0], tg_last_error());
    return 1;
  }
  float *g = y->grad;
  for (int64_t i = 0; i < n; i++) g[i] = (float)(i % 7) * 0.25f - 0.75f;
  tg_node node = {.op = op, .in = in, .n_in = op->n_in, .out = y,
                  .args = op->cases[0].args};
  node.args.n_in = op->n_in;
  printf("%s float32, %lld elements, %s, median of %d\n", name, (long long)n,
         cpu_time ? "thread CPU time" : "wall time", reps);
  printf("%-8s %10s %10s %10s\n", "path", "fwd ns/el", "bwd ns/el", "sum");
  for (int p = 0; p < TG__SIMD_NPATHS; p++) {
    if (tg__simd_set_path(p)) continue;
    double tf[101], tb[101];
    for (int r = 0; r < reps; r++) {
      double t0 = tick();
      if (op->forward(NULL, &node)) {
        fprintf(stderr, "%s: %s\n", argv[0], tg_last_error());
        return 1;
      }
      double t1 = tick();
      op->backward(&node);
      double t2 = tick();
      tf[r] = (t1 - t0) * 1e9 / (double)n;
      tb[r] = (t2 - t1) * 1e9 / (double)n;
    }
    qsort(tf, (size_t)reps, sizeof *tf, cmp_double);
    qsort(tb, (size_t)reps, sizeof *tb, cmp_double);
    printf("%-8s %10.3f %10.3f %10.3f\n", tg__simd_name(p), tf[reps / 2],
           tb[reps / 2], tf[reps / 2] + tb[reps / 2]);
  }
  tg_tensor_free(in[0]);
  tg_tensor_free(in[1]);
  tg_tensor_free(y);
  return 0;
}
