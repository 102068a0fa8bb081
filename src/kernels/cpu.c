/* src/kernels/cpu.c: the CPU's features, probed once for every kernel. */
#include <stdatomic.h>

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
