/* src/engine/rng.c: the library's own random numbers (xoshiro256** seeded by
 * splitmix64), so a seed gives the same stream on every machine. */
#include <math.h>

#include "engine.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A NULL generator is a caller's error: a message, and a value that cannot
 * pass for a draw where one exists (NaN). */
static bool have(const tg_rng *rng, const char *fn) {
  if (rng) return true;
  tg__err(TG_EINVAL, "%s: rng is NULL", fn);
  return false;
}

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
  if (!have(rng, "tg_rng_seed")) return;
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t tg_rng_next(tg_rng *rng) {
  if (!have(rng, "tg_rng_next")) return 0;
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double tg_rng_uniform(tg_rng *rng) {
  if (!have(rng, "tg_rng_uniform")) return NAN;
  return (double)(tg_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t tg_rng_below(tg_rng *rng, uint64_t n) {
  if (!have(rng, "tg_rng_below") || n <= 1) return 0;
  /* Reject the top partial range so every value is equally likely. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = tg_rng_next(rng);
  while (x >= limit);
  return x % n;
}

/* Polar method: needs only log and sqrt, no trigonometry. */
double tg_rng_normal(tg_rng *rng) {
  if (!have(rng, "tg_rng_normal")) return NAN;
  double u, v, s;
  do {
    u = 2.0 * tg_rng_uniform(rng) - 1.0;
    v = 2.0 * tg_rng_uniform(rng) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  return u * sqrt(-2.0 * log(s) / s);
}
