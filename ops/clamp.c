/* ops/clamp.c: y = min(max(x, lo), hi) for constants lo <= hi (args f[0],
 * f[1]; either may be infinite); dy/dx = 1 where lo <= x <= hi, bounds
 * included (PyTorch's convention), else 0. A NaN x stays NaN, with
 * gradient 0. The tests keep x at least 0.05 from every bound: the
 * NONZERO domain has no x in (-0.1, 0.1), and bounds sit there or beyond
 * |x| <= 2. */
#include "op.h"

static int check_bounds(const char *fn, tg_tensor *const *in,
                        const tg_opargs *a, tg_outshape *out) {
  (void)in;
  (void)out;
  double lo = a->f[0], hi = a->f[1];
  if (lo != lo || hi != hi || lo > hi)
    return tg__err(TG_EINVAL,
                   "%s: lo and hi must not be NaN and lo <= hi: lo is %g, hi is %g",
                   fn, lo, hi);
  return TG_OK;
}
#define UNARY_NAME clamp
#define UNARY_DOMAIN TG__DOM_NONZERO
#define UNARY_ARGS {.f = {-3, 0.05}}
#define UNARY_RULE check_bounds
#define C_CASE(lo, hi)                                                      \
  {.ndim = {2}, .shape = {{4, 5}}, .domain = {TG__DOM_NONZERO}, .args = {.f = {lo, hi}}},
#define C_BAD(lo, hi)                                                       \
  {.ndim = {1}, .shape = {{3}}, .args = {.f = {lo, hi}}, .status = TG_EINVAL, \
   .msg = "lo is"},
#define UNARY_MORE_CASES                                                     \
  C_CASE(0.05, 3) C_CASE(-INFINITY, 0) C_CASE(0, INFINITY) C_CASE(-0.05, 0.05) \
  C_CASE(0, 0) C_CASE(-INFINITY, INFINITY) C_CASE(-2.5, 2.5)                 \
  C_BAD(1, -1) C_BAD(NAN, 1) C_BAD(-1, NAN) C_BAD(INFINITY, -INFINITY)
#define FWD(x) ((x) < a0 ? a0 : (x) > a1 ? a1 : (x))
#define BWD(x, y, g) ((x) >= a0 && (x) <= a1 ? (g) : 0)
#define UNARY_FWD_SIMD 2
#include "unary.h"

tg_tensor *tg_clamp(tg_tape *t, tg_tensor *a, double lo, double hi) {
  const tg_opargs args = {.f = {lo, hi}};
  return TG__APPLY(t, clamp, &args, a);
}
