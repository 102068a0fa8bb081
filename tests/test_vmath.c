/* tests/test_vmath.c: the straight-line float functions of vmath.h against
 * libm, over dense sweeps and special values. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "src/kernels/vmath.h"

/* Distance in representable floats (0 and -0 the same; NaN only matches
 * NaN). */
static int64_t ulps(float a, float b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
  if (a == b) return 0;
  int32_t ia, ib;
  memcpy(&ia, &a, sizeof ia);
  memcpy(&ib, &b, sizeof ib);
  int64_t la = ia < 0 ? -(int64_t)(ia & 0x7fffffff) : ia;
  int64_t lb = ib < 0 ? -(int64_t)(ib & 0x7fffffff) : ib;
  return llabs(la - lb);
}

/* References in double from libm, rounded once to float. */
static float ref_gelu(float xf) {
  double x = xf, c = 0.5 * erfc(-x * 0.70710678118654752440);
  return (float)(c == 0 ? 0 : x * c);
}
static float ref_dgelu(float xf) {
  double x = xf, c = 0.5 * erfc(-x * 0.70710678118654752440);
  double p = 0.39894228040143267794 * exp(-0.5 * x * x);
  return (float)(p == 0 ? c : c + x * p);
}
/* dgelu's error in ulps, except near its zero by x = -0.75, where P and
 * x p cancel: there, in units of 2^-24 times the terms' size |P| + |x p|,
 * the rounding any float evaluation of the sum commits. */
static int64_t dgelu_err(float v, float xf) {
  float r = ref_dgelu(xf);
  int64_t u = ulps(v, r);
  if (u <= 1 || isnan(v)) return u;
  double x = xf, c = 0.5 * erfc(-x * 0.70710678118654752440);
  double terms = c + fabs(x) * 0.39894228040143267794 * exp(-0.5 * x * x);
  double e = fabs((double)v - r) / (terms * 0x1p-24);
  return e <= 1 ? 1 : (int64_t)ceil(e);
}
static float v_gelu(float x) {
  double p, c = tg__normcdf_pdf(x, &p);
  return (float)(c == 0 ? 0 : x * c);
}
static float v_dgelu(float x) {
  double p, c = tg__normcdf_pdf(x, &p);
  return (float)(p == 0 ? c : c + x * p);
}

static const float specials[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-30f, -1e-30f,
                                 FLT_MIN, -FLT_MIN, 14.8f, -14.8f, 14.9f, -14.9f,
                                 20.0f, -20.0f, 1e10f, -1e10f, FLT_MAX, -FLT_MAX,
                                 INFINITY, -INFINITY};

START_TEST(gelu_sweep) {
  int64_t worst_f = 0, worst_d = 0;
  float at_f = 0, at_d = 0;
  /* every 1e-4 over [-16, 16], past where the lower tail underflows */
  for (int64_t i = -160000; i <= 160000; i++) {
    float x = (float)(i * 1e-4);
    int64_t ef = ulps(v_gelu(x), ref_gelu(x)), ed = dgelu_err(v_dgelu(x), x);
    if (ef > worst_f) worst_f = ef, at_f = x;
    if (ed > worst_d) worst_d = ed, at_d = x;
  }
  ck_assert_msg(worst_f <= 1, "gelu: %lld ulp at %.9g", (long long)worst_f, at_f);
  ck_assert_msg(worst_d <= 1, "dgelu: %lld ulp at %.9g", (long long)worst_d, at_d);
  for (size_t k = 0; k < sizeof specials / sizeof *specials; k++) {
    float x = specials[k];
    ck_assert_msg(ulps(v_gelu(x), ref_gelu(x)) <= 1, "gelu(%g) = %g, libm %g", x,
                  v_gelu(x), ref_gelu(x));
    ck_assert_msg(dgelu_err(v_dgelu(x), x) <= 1, "dgelu(%g) = %g, libm %g", x,
                  v_dgelu(x), ref_dgelu(x));
  }
  ck_assert(v_gelu(-INFINITY) == 0 && v_gelu(INFINITY) == INFINITY);
  ck_assert(v_dgelu(-INFINITY) == 0 && v_dgelu(INFINITY) == 1);
  ck_assert(isnan(v_gelu(NAN)) && isnan(v_dgelu(NAN)));
}
END_TEST

/* The gradual underflow of the lower tail, the region a fitted tail is
 * most likely to get wrong: every float in [-15, -5] at its own spacing
 * would be too many, so every 64th. */
START_TEST(gelu_tail) {
  int64_t worst = 0;
  float at = 0;
  for (float x = -15.0f; x < -5.0f; x = nextafterf(x, 0.0f)) {
    for (int s = 0; s < 63 && x < -5.0f; s++) x = nextafterf(x, 0.0f);
    int64_t e = ulps(v_gelu(x), ref_gelu(x));
    int64_t d = dgelu_err(v_dgelu(x), x);
    if (e > worst) worst = e, at = x;
    if (d > worst) worst = d, at = x;
  }
  ck_assert_msg(worst <= 1, "gelu tail: %lld ulp at %.9g", (long long)worst, at);
}
END_TEST

START_TEST(exp_neg_double) {
  double worst = 0;
  for (int i = 0; i <= 708000; i++) {
    double x = -i * 1e-3, r = exp(x);
    double e = fabs(tg__exp_neg(x) - r) / r;
    worst = e > worst ? e : worst;
  }
  ck_assert_msg(worst < 3e-10, "exp_neg: relative error %g", worst);
  ck_assert(tg__exp_neg(0) == 1 && isnan(tg__exp_neg(NAN)));
}
END_TEST

int main(void) {
  Suite *s = suite_create("vmath");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, gelu_sweep);
  tcase_add_test(tc, gelu_tail);
  tcase_add_test(tc, exp_neg_double);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
