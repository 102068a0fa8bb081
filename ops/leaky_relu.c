/* ops/leaky_relu.c: y = x for x > 0, else slope x (args f[0]); dy/dx = 1
 * for x > 0, else slope (at 0 too, as PyTorch). Tested away from 0. */
#include "op.h"

static int check_slope(const char *fn, tg_tensor *const *in,
                       const tg_opargs *a, tg_outshape *out) {
  (void)in;
  (void)out;
  return a->f[0] != a->f[0] ? tg__err(TG_EINVAL, "%s: slope is NaN", fn) : TG_OK;
}
#define UNARY_NAME leaky_relu
#define UNARY_DOMAIN TG__DOM_NONZERO
#define UNARY_ARGS {.f = {0.01}}
#define UNARY_RULE check_slope
#define UNARY_MORE_CASES                                                     \
  {.ndim = {2}, .shape = {{3, 4}}, .domain = {TG__DOM_NONZERO}, .args = {.f = {0.2}}}, \
  {.ndim = {2}, .shape = {{3, 4}}, .domain = {TG__DOM_NONZERO}, .args = {.f = {-0.5}}}, \
  {.ndim = {1}, .shape = {{4}}, .args = {.f = {NAN}}, .status = TG_EINVAL,   \
   .msg = "slope is NaN"},
#define FWD(x) ((x) > 0 ? (x) : a0 * (x))
#define BWD(x, y, g) ((x) > 0 ? (g) : a0 * (g))
#define UNARY_FWD_SIMD 2
#include "unary.h"

tg_tensor *tg_leaky_relu(tg_tape *t, tg_tensor *a, double slope) {
  return TG__APPLY(t, leaky_relu, &(tg_opargs){.f = {slope}}, a);
}
