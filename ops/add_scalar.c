/* ops/add_scalar.c: y = x + c for a constant c (args f[0]); dx = g. */
#include "op.h"

static int check_c(const char *fn, tg_tensor *const *in, const tg_opargs *a,
                   tg_outshape *out) {
  (void)in;
  (void)out;
  return a->f[0] != a->f[0] ? tg__err(TG_EINVAL, "%s: the constant c is NaN", fn) : TG_OK;
}
#define UNARY_NAME add_scalar
#define UNARY_DOMAIN TG__DOM_ANY
#define UNARY_ARGS {.f = {1.5}}
#define UNARY_RULE check_c
#define UNARY_MORE_CASES                                                    \
  {.ndim = {2}, .shape = {{2, 3}}, .args = {.f = {-1e3}}},                  \
  {.ndim = {1}, .shape = {{4}}, .args = {.f = {NAN}}, .status = TG_EINVAL,  \
   .msg = "c is NaN"},
#define FWD(x) ((x) + a0)
#define BWD(x, y, g) (g)
#define UNARY_FWD_SIMD 2
#include "unary.h"

tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *a, double c) {
  return TG__APPLY(t, add_scalar, &(tg_opargs){.f = {c}}, a);
}
