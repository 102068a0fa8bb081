/* src/threads.c: how many threads the kernels may use. */
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

int tg_set_num_threads(int n) {
  if (n < 1) return tg__err(TG_EINVAL, "tg_set_num_threads: %d threads; it must be >= 1", n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  return TG_OK;
}

int tg_get_num_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void tg__par_range(int64_t n, int64_t min_chunk, tg__range_fn fn, void *ctx) {
#ifdef _OPENMP
  int64_t nt = n / (min_chunk > 0 ? min_chunk : 1);
  if (nt > omp_get_max_threads()) nt = omp_get_max_threads();
  if (nt >= 2 && !omp_in_parallel()) {
#pragma omp parallel num_threads((int)nt)
    {
      int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
      /* chunk edges on 64-byte lines for either float type */
      int64_t i0 = n * t / k / 16 * 16, i1 = t + 1 == k ? n : n * (t + 1) / k / 16 * 16;
      if (i1 > i0) fn(ctx, i0, i1);
    }
    return;
  }
#endif
  fn(ctx, 0, n);
}
