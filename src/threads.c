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
