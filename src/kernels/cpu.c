/* src/kernels/cpu.c: the CPU's features, probed once for every kernel, and
 * the elementwise loops' vector path (TG_SIMD). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

unsigned tg__cpu_features(void) {
  static _Atomic int cached = -1;
  int f = atomic_load_explicit(&cached, memory_order_relaxed);
  if (f >= 0) return (unsigned)f;
  f = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    f |= TG__CPU_AVX2_FMA;
  if (__builtin_cpu_supports("avx512f")) f |= TG__CPU_AVX512F;
  if (__builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt"))
    f |= TG__CPU_BMI2_POPCNT;
#endif
  atomic_store_explicit(&cached, f, memory_order_relaxed);
  return (unsigned)f;
}

static const char *const simd_names[TG__SIMD_NPATHS] = {"generic", "avx2",
                                                        "avx512"};

const char *tg__simd_name(int p) {
  return p >= 0 && p < TG__SIMD_NPATHS ? simd_names[p] : "?";
}

bool tg__simd_supported(int p) {
  static _Atomic int cached = -1; /* bit p: path p runs here */
  int m = atomic_load_explicit(&cached, memory_order_relaxed);
  if (m < 0) {
    m = 1 << TG__SIMD_GENERIC;
#if TG__SIMD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) m |= 1 << TG__SIMD_AVX2;
    /* the subset TG__TARGET_avx512 compiles for */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq"))
      m |= 1 << TG__SIMD_AVX512;
#endif
    atomic_store_explicit(&cached, m, memory_order_relaxed);
  }
  return p >= 0 && p < TG__SIMD_NPATHS && (m >> p & 1);
}

/* -2: not resolved yet; -1: TG_SIMD refused (simd_bad says why). */
static _Atomic int simd_now = -2;
static char simd_bad[96];

static int simd_resolve(void) {
  int best = TG__SIMD_GENERIC;
  for (int p = TG__SIMD_NPATHS - 1; p > TG__SIMD_GENERIC; p--)
    if (tg__simd_supported(p)) {
      best = p;
      break;
    }
  const char *env = getenv("TG_SIMD");
  if (!env || !*env) return best;
  for (int p = 0; p < TG__SIMD_NPATHS; p++)
    if (strcmp(env, simd_names[p]) == 0) {
      if (tg__simd_supported(p)) return p;
      snprintf(simd_bad, sizeof simd_bad,
               "TG_SIMD is '%s', which this CPU cannot run (best: %s)",
               simd_names[p], simd_names[best]);
      return -1;
    }
  snprintf(simd_bad, sizeof simd_bad,
           "TG_SIMD is '%.32s'; it must be generic, avx2 or avx512", env);
  return -1;
}

static int simd_state(void) {
  int p = atomic_load_explicit(&simd_now, memory_order_acquire);
  if (p == -2) {
    /* Threads racing here compute the same answer; simd_bad is written
     * before the release store that publishes -1. */
    p = simd_resolve();
    atomic_store_explicit(&simd_now, p, memory_order_release);
  }
  return p;
}

int tg__simd_path(void) {
  int p = simd_state();
  return p < 0 ? TG__SIMD_GENERIC : p;
}

int tg__simd_check(const char *fn) {
  if (simd_state() >= 0) return TG_OK;
  return tg__err(TG_EINVAL, "%s: %s", fn, simd_bad);
}

int tg__simd_set_path(int p) {
  if (p < 0) {
    atomic_store_explicit(&simd_now, -2, memory_order_release);
    return TG_OK;
  }
  if (!tg__simd_supported(p)) return TG_EINVAL;
  atomic_store_explicit(&simd_now, p, memory_order_release);
  return TG_OK;
}
