/* ops/pow_scalar.c: y = x^p for a constant p (args f[0]); dy/dx = p x^(p-1),
 * and 0 for p = 0 (as PyTorch), where p x^(p-1) would give 0 * inf at
 * x = 0. C's pow decides the rest: x^0 = 1 for every x (NaN too), a
 * negative x to a non-integer p is NaN, 0 to a negative p is inf. */
#include "op.h"

static int check_p(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out) {
  (void)in;
  (void)out;
  return a->f[0] != a->f[0] ? tg__err(TG_EINVAL, "%s: the exponent p is NaN", fn) : TG_OK;
}
#define UNARY_NAME pow_scalar
#define UNARY_DOMAIN TG__DOM_ANY
#define UNARY_ARGS {.f = {3}}
#define UNARY_RULE check_p
#define P_CASE(p, dom) {.ndim = {2}, .shape = {{3, 4}}, .domain = {dom}, .args = {.f = {p}}},
#define UNARY_MORE_CASES                                                     \
  P_CASE(0.5, TG__DOM_POS) P_CASE(-1.5, TG__DOM_POS) P_CASE(2, TG__DOM_ANY) \
  P_CASE(1, TG__DOM_ANY) P_CASE(0, TG__DOM_ANY) P_CASE(-2, TG__DOM_NONZERO) \
  {.ndim = {1}, .shape = {{4}}, .args = {.f = {NAN}}, .status = TG_EINVAL,   \
   .msg = "p is NaN"},
#define FWD(x) pow(x, a0)
#define BWD(x, y, g) (a0 == 0 ? 0 : a0 * pow(x, a0 - 1) * (g))
#define UNARY_BWD_SIMD 0
#include "unary.h"

tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *a, double p) {
  return TG__APPLY(t, pow_scalar, &(tg_opargs){.f = {p}}, a);
}
