/* bench/dist.c: the cost of the gradient all-reduce alone, on W2's
 * parameters (784-512-512-10, 669,706 floats, 2.68 MB), with no training
 * around it: milliseconds per tg_dist_mean_grads for the fixed-order
 * reduction and for MPI_Allreduce, so the transfer is seen apart from the
 * ranks' waiting for each other. Run under mpirun:
 *   mpirun -np 2 bench/dist [steps]
 * Public API only. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tapegrad.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  tg_dist *d = tg_dist_init(&argc, &argv);
  if (!d) {
    fprintf(stderr, "%s\n", tg_last_error());
    return 1;
  }
  int steps = argc > 1 ? atoi(argv[1]) : 200;
  if (steps < 1) steps = 200;
  const int64_t shapes[6][2] = {{784, 512}, {512, 0}, {512, 512}, {512, 0}, {512, 10}, {10, 0}};
  tg_tensor *p[6];
  int64_t n = 0;
  tg_rng rng;
  tg_rng_seed(&rng, 1 + (uint64_t)tg_dist_rank(d));
  for (int i = 0; i < 6; i++) {
    p[i] = shapes[i][1] ? tg_zeros(TG_F32, TG_SHAPE(shapes[i][0], shapes[i][1]))
                        : tg_zeros(TG_F32, TG_SHAPE(shapes[i][0]));
    tg_requires_grad(p[i], true);
    n += tg_tensor_numel(p[i]);
  }
  const char *names[2] = {"fixed order", "MPI_Allreduce"};
  int rc = 0;
  for (int how = 0; how < 2 && !rc; how++) {
    tg_dist_set_reduce(d, how ? TG_DIST_REDUCE_MPI : TG_DIST_REDUCE_FIXED);
    double best = 1e30, total = 0;
    for (int s = 0; s < steps + 5 && !rc; s++) {
      for (int i = 0; i < 6; i++) tg_fill_normal(tg_tensor_grad(p[i]), &rng, 0, 1);
      rc = tg_dist_barrier(d);
      double t0 = now();
      if (!rc) rc = tg_dist_mean_grads(d, p, 6, 64);
      double t = now() - t0;
      if (s >= 5) total += t, best = t < best ? t : best; /* the first ones warm up */
    }
    if (!rc && tg_dist_rank(d) == 0)
      printf("%d processes, %s: %.3f ms per all-reduce of %lld floats (%.2f MB), best %.3f ms\n",
             tg_dist_size(d), names[how], 1e3 * total / steps, (long long)n,
             4e-6 * (double)n, 1e3 * best);
  }
  if (rc) fprintf(stderr, "%s\n", tg_last_error());
  for (int i = 0; i < 6; i++) tg_tensor_free(p[i]);
  if (tg_dist_finalize(d) && !rc) rc = 1;
  return rc ? 1 : 0;
}
