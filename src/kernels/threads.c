/* src/kernels/threads.c: how many threads the kernels may use, and every parallel
 * region they run, behind a guard that falls back to one thread while
 * regions stop paying (another program keeping a core busy). */
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"

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

/* ---- the guard. A parallel region is as slow as its slowest thread: with
 * a core taken by another program, the thread that shares it runs a time
 * slice at a time and the region ends up slower than one thread alone
 * (W2 on 2 threads beside a busy loop: 5.56 s/epoch against 2.35 on one).
 * So each region's CPU time (summed over its threads) is set against its
 * wall time; while the regions of the last while have not run at least
 * TG__GUARD_GAIN times faster than their CPU time, the next ones run on
 * one thread, for a stretch that doubles each time a retry fails. Results
 * never depend on it: every region splits work whose outcome is the same
 * on any number of threads. The state is the calling thread's own. */
static _Thread_local tg__guard guard = {.stretch = TG__GUARD_MIN_STRETCH};
static _Atomic bool guard_off;

void tg__par_guard_enable(bool on) { guard_off = !on; }

bool tg__guard_serial(tg__guard *g) {
  if (g->skip == 0) return false;
  g->skip--;
  return true;
}

void tg__guard_update(tg__guard *g, double cpu, double wall) {
  /* a decaying sum over the last regions, so one preempted region neither
   * trips the guard nor hides a pattern */
  g->cpu = TG__GUARD_DECAY * g->cpu + cpu;
  g->wall = TG__GUARD_DECAY * g->wall + wall;
  if (++g->seen < TG__GUARD_WINDOW) return;
  if (g->cpu >= TG__GUARD_GAIN * g->wall) {
    g->stretch = TG__GUARD_MIN_STRETCH; /* paying: the next back-off is short */
    return;
  }
  g->skip = g->stretch;
  if (g->stretch < TG__GUARD_MAX_STRETCH) g->stretch *= 2;
  g->cpu = g->wall = 0;
  g->seen = 0;
}

static double seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int tg__par_threads(int want) {
#ifdef _OPENMP
  if (want > omp_get_max_threads()) want = omp_get_max_threads();
  if (want < 2 || omp_in_parallel()) return 1;
  if (!guard_off && tg__guard_serial(&guard)) return 1;
  return want;
#else
  (void)want;
  return 1;
#endif
}

void tg__par_run(int nt, tg__par_fn fn, void *ctx) {
#ifdef _OPENMP
  if (nt >= 2) {
    double cpu = 0, w0 = seconds(CLOCK_MONOTONIC);
#pragma omp parallel num_threads(nt) reduction(+ : cpu)
    {
      double c0 = seconds(CLOCK_THREAD_CPUTIME_ID);
      fn(ctx, omp_get_thread_num(), omp_get_num_threads());
      cpu += seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    if (!guard_off) tg__guard_update(&guard, cpu, seconds(CLOCK_MONOTONIC) - w0);
    return;
  }
#endif
  fn(ctx, 0, 1);
}

typedef struct {
  int64_t n;
  tg__range_fn fn;
  void *ctx;
} range_job;

static void range_part(void *p, int t, int k) {
  const range_job *j = p;
  int64_t n = j->n;
  /* chunk edges on 64-byte lines for either float type */
  int64_t i0 = n * t / k / 16 * 16, i1 = t + 1 == k ? n : n * (t + 1) / k / 16 * 16;
  if (i1 > i0) j->fn(j->ctx, i0, i1);
}

void tg__par_range(int64_t n, int64_t min_chunk, tg__range_fn fn, void *ctx) {
  int64_t want = n / (min_chunk > 0 ? min_chunk : 1);
  int nt = tg__par_threads(want > 64 ? 64 : (int)want);
  if (nt < 2) {
    fn(ctx, 0, n);
    return;
  }
  range_job j = {n, fn, ctx};
  tg__par_run(nt, range_part, &j);
}
