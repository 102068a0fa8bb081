/* src/kernels/vmath.h: float functions written as straight-line arithmetic, so a
 * loop over them vectorises (libm's expf is a call the compiler cannot). */
#ifndef TAPEGRAD_VMATH_H
#define TAPEGRAD_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The larger of these are not inlined by -O2's heuristics, and a call
 * inside a loop stops it vectorising; nor is a function inlined into each
 * of a loop's per-path copies (TG__SIMD_EACH) when there are several: the
 * AVX copies would call the generic code. */
#if defined(__GNUC__)
#define TG__VINLINE static inline __attribute__((always_inline))
#else
#define TG__VINLINE static inline
#endif

/* e^x for x in [-87.3, 0]: x = n ln2 + r with |r| <= ln2/2, e^r from a
 * degree-6 polynomial (Cephes' expf coefficients), 2^n from the exponent
 * bits. Within 2 ulp of the correctly rounded value on that range. */
TG__VINLINE float tg__expf_neg(float x) {
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
TG__VINLINE float tg__sigmoidf(float x) {
  float ax = x < 0 ? -x : x;
  float e = tg__expf_neg(-ax);
  float y = (x < 0 ? e : 1.0f) / (1.0f + e);
  /* A multiply rather than a branch around the division, which the
   * compiler would not run speculatively, and so would not vectorise. */
  float keep = x < -87.3f ? 0.0f : 1.0f;
  return y * keep;
}

/* e^x for double x in [-708, 0], in the style of tg__expf_neg: 2^n from
 * the exponent bits, e^r (|r| <= ln2/2) from its Taylor series to degree
 * 8 (remainder under 3e-10 relative). Meant for float results computed
 * in double, where that is under 1/250 of a float's ulp. */
TG__VINLINE double tg__exp_neg(double x) {
  const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
               ln2_lo = 1.90821492927058770002e-10,
               round = 6755399441055744.0; /* 1.5 * 2^52 */
  x = x < -708.0 ? -708.0 : x;
  double t = x * log2e + round;
  double n = t - round;
  uint64_t tbits;
  memcpy(&tbits, &t, sizeof tbits);
  double r = x - n * ln2_hi;
  r = r - n * ln2_lo;
  double p = 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * (r * r) + r + 1.0;
  uint64_t bits = (tbits - 0x4338000000000000u + 1023u) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* The standard normal CDF P(x) = erfc(-x/sqrt 2)/2 and, in *pdf, the
 * density p(x) = e^(-x^2/2)/sqrt(2 pi), in double, for the float GELU
 * (libm's erfcf is a call per element, which does not vectorise). With
 * z = |x|/sqrt 2, erfc(z) = e^(-z^2) t Q(t), t = 1/(1 + 0.3 z), Q a
 * degree-10 polynomial fitted to erfc(z) e^(z^2) on [0, 10.5] (relative
 * error under 2e-9 there, e^(-z^2)'s under 3e-10: both far below a
 * float's ulp, so a float rounded from P, x P or P + x p is within 1
 * ulp); P(x) = erfc(z)/2 for x < 0 and 1 - erfc(z)/2 otherwise,
 * which keeps P's relative precision in the lower tail. Beyond z = 10.5
 * (|x| > 14.8) x p(x) and x P(x) for x < 0 are below a float's least
 * denormal: P is 0 or 1 and p 0. NaN gives NaN. */
TG__VINLINE double tg__normcdf_pdf(double x, double *pdf) {
  double az = fabs(x) * 0.70710678118654752440;
  /* No clamp of z to the fitted range: gcc's vectorised code for one ran
   * several times slower. Past it e (tg__exp_neg clamps its argument) and
   * t stay finite, and keep zeroes them. */
  double e = tg__exp_neg(-az * az);
  double t = 1.0 / (1.0 + 0.3 * az);
  double q = 5.40408742187520122e-02;
  q = q * t - 3.22648627346723393e-01;
  q = q * t + 7.17094371675429110e-01;
  q = q * t - 7.98160610438798823e-01;
  q = q * t + 7.31447892713619985e-01;
  q = q * t - 2.55552691182627412e-01;
  q = q * t + 2.55103950781174649e-01;
  q = q * t + 1.13678229658431051e-01;
  q = q * t + 1.66969244899125513e-01;
  q = q * t + 1.68749002827167066e-01;
  q = q * t + 1.69278360417800727e-01;
  double keep = az > 10.5 ? 0.0 : 1.0;
  double h = 0.5 * e * t * q * keep; /* erfc(z)/2 */
  *pdf = 0.39894228040143267794 * e * keep;
  /* h or 1 - h (exactly as written, the sign flip being exact) without a
   * branch on the sign, which random signs would mispredict. */
  double up = x < 0 ? 0.0 : 1.0;
  return up + (1.0 - 2.0 * up) * h;
}

#endif
