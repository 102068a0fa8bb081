/* ops/gelu.c: the exact GELU, y = x P(x) with P the standard normal CDF,
 * P(x) = erfc(-x/sqrt 2)/2 (= (1 + erf(x/sqrt 2))/2, but erfc keeps P's
 * relative precision for negative x); dy/dx = P(x) + x p(x), p(x) =
 * e^(-x^2/2)/sqrt(2 pi) the normal density. At x = +-inf the limits
 * (y = 0 at -inf; dy/dx = 0 and 1), not inf * 0. float: P and p from
 * vmath.h's straight-line form in double, so the loops vectorise and the
 * result is within 1 ulp; double: libm, for gradient checks. */
#include <tgmath.h>

#include "op.h"

TG__VINLINE float gelu_f32(float x) {
  double p, c = tg__normcdf_pdf(x, &p);
  (void)p;
  return (float)(c == 0 ? 0 : x * c);
}
TG__VINLINE float dgelu_f32(float x) {
  double p, c = tg__normcdf_pdf(x, &p);
  return (float)(p == 0 ? c : c + x * p);
}
TG__VINLINE double cdf_f64(double x) { return 0.5 * erfc(x * -0.70710678118654752440); }
TG__VINLINE double gelu_f64(double x) {
  double c = cdf_f64(x);
  return c == 0 ? 0 : x * c;
}
TG__VINLINE double dgelu_f64(double x) {
  double p = 0.39894228040143267794 * exp(-0.5 * x * x);
  return p == 0 ? cdf_f64(x) : cdf_f64(x) + x * p;
}
#define UNARY_NAME gelu
#define UNARY_DOMAIN TG__DOM_ANY
#define FWD(x) UNARY_PICK(gelu, x)
#define BWD(x, y, g) ((g) * UNARY_PICK(dgelu, x))
#define UNARY_FWD_SIMD 1
#define UNARY_BWD_SIMD 1
#include "unary.h"
