/* src/kernels/vmath.h: float functions written as straight-line arithmetic, so a
 * loop over them vectorises (libm's expf is a call the compiler cannot). */
#ifndef TAPEGRAD_VMATH_H
#define TAPEGRAD_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^x for x in [-87.3, 0]: x = n ln2 + r with |r| <= ln2/2, e^r from a
 * degree-6 polynomial (Cephes' expf coefficients), 2^n from the exponent
 * bits. Within 2 ulp of the correctly rounded value on that range. */
static inline float tg__expf_neg(float x) {
  const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f,
              ln2_lo = -2.12194440e-4f, round = 12582912.0f; /* 1.5 * 2^23 */
  x = x < -87.3f ? -87.3f : x;
  /* n = nearest integer to x log2(e), in [-126, 0], both as a float and,
   * from the low bits of t, as an integer (no float-to-int conversion,
   * which the compiler treats as a possible trap and will not vectorise). */
  float t = x * log2e + round;
  float n = t - round;
  /* The integer arithmetic is unsigned: for a NaN x the bits of t are
   * anything, and only unsigned arithmetic wraps without undefined
   * behaviour (the result is NaN through p then). */
  uint32_t tbits;
  memcpy(&tbits, &t, sizeof tbits);
  float r = x - n * ln2_hi;
  r = r - n * ln2_lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  uint32_t bits = (tbits - 0x4B400000u + 127u) << 23; /* (n + 127) << 23 */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* 1/(1+e^-x) from e^-|x|, which cannot overflow; below -87.3, where the
 * value is under 2^-125, it is 0 as the division by an infinite e^-x gave. */
static inline float tg__sigmoidf(float x) {
  float ax = x < 0 ? -x : x;
  float e = tg__expf_neg(-ax);
  float y = (x < 0 ? e : 1.0f) / (1.0f + e);
  /* A multiply rather than a branch around the division, which the
   * compiler would not run speculatively, and so would not vectorise. */
  float keep = x < -87.3f ? 0.0f : 1.0f;
  return y * keep;
}

#endif
